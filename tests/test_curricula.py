"""Curriculum building blocks against their formulas, and each variant as a real tracked run."""
import math
from pathlib import Path

import mlflow
import mlflow.projects
import numpy as np
import pytest
import torch

from clips.config import build_config
from clips.curricula import REGISTRY, CurriculumContext, get_curriculum
from clips.curricula._rl_teacher import Exp3S, rescale
from clips.curricula._self_paced import spl_weights
from clips.curricula._smoothing import Smoothing, gaussian_kernel1d, smooth3d
from clips.curricula.pacing import pace
from clips.errors import ConfigError
from clips.models import SegNet

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind,t,expected", [
    ("linear", 0, 0.2), ("linear", 5, 0.2 + 0.8 * 0.5), ("linear", 10, 1.0), ("linear", 15, 1.0),
    ("root", 5, math.sqrt(0.04 + 0.96 * 0.5)),
    ("root_p", 5, (0.2 ** 3 + (1 - 0.2 ** 3) * 0.5) ** (1 / 3)),
    ("geometric", 5, 2 ** (math.log2(0.2) - math.log2(0.2) * 0.5)),
    ("exponential_step", 0, 0.2), ("exponential_step", 4, 0.2 * 1.9 ** 2), ("exponential_step", 20, 1.0),
])
def test_pacing_formulas(kind, t, expected):
    assert pace(kind, t, start=0.2, full=10, p=3, increase=1.9, step_length=2) == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["linear", "root", "root_p", "geometric", "exponential_step"])
def test_pacing_is_monotone_and_ends_at_one(kind):
    g = [pace(kind, t, 0.1, 12, p=2.5, increase=2.0, step_length=3) for t in range(30)]
    assert all(b >= a for a, b in zip(g, g[1:])) and g[-1] == 1.0 and 0 < g[0] <= 0.1 + 1e-12


def test_self_paced_weights_at_chosen_losses():
    losses = np.array([0.0, 0.25, 0.5, 1.0, 2.0])
    assert spl_weights(losses, 1.0, "hard").tolist() == [1, 1, 1, 0, 0]
    assert spl_weights(losses, 1.0, "linear").tolist() == [1, 0.75, 0.5, 0, 0]
    # logarithmic: losses scaled by the largest (2), zeta = 1 - 0.5; v = log(l/2 + zeta) / log(zeta)
    log_w = spl_weights(losses, 1.0, "logarithmic")
    scale = 2.0 * (1 + 1e-6)
    zeta = 1 - 1.0 / scale
    assert log_w[1] == pytest.approx(math.log(0.25 / scale + zeta) / math.log(zeta))
    assert log_w[0] == pytest.approx(1.0) and log_w[3] == 0 and log_w[4] == 0
    # mixture with lambda = 1, gamma = 1: full weight up to 1/4, then 1/sqrt(l) - 1, zero from 1 on
    mix = spl_weights(losses, 1.0, "mixture", gamma=1.0)
    assert mix.tolist() == pytest.approx([1.0, 1.0, 1 / math.sqrt(0.5) - 1, 0.0, 0.0])


def test_exp3s_step_by_hand():
    b = Exp3S(k=3, eta=0.5, beta=0.1, epsilon=0.3)
    pi = b.probabilities()
    assert pi == pytest.approx([1 / 3] * 3)
    b.update(arm=1, reward=0.8, pi=pi)
    # alpha_1 = 1: each weight becomes the mean of the others' exp(w + eta * r_tilde), in log
    r = np.array([0.1, 0.9, 0.1]) / (1 / 3)
    x = np.exp(0.5 * r)
    expected = np.log([(x[1] + x[2]) / 2, (x[0] + x[2]) / 2, (x[0] + x[1]) / 2])
    assert b.w == pytest.approx(expected - expected.max())
    b.update(arm=1, reward=0.8)  # alpha_2 = 1/2
    assert b.t == 2 and b.probabilities().sum() == pytest.approx(1.0)


def test_reward_rescaling():
    hist = list(np.linspace(0, 10, 11))
    assert rescale(1.0, hist) == -1.0 and rescale(9.0, hist) == 1.0
    assert rescale(5.0, hist) == pytest.approx(0.0) and rescale(3.0, [3.0]) == 0.0


def test_smoothing_kernel_and_identity():
    for sigma in (0.4, 1.0, 2.5):
        k = gaussian_kernel1d(sigma)
        assert k.sum().item() == pytest.approx(1.0) and len(k) == 2 * math.ceil(2 * sigma) + 1
    const = torch.full((1, 2, 6, 7, 8), 3.0)
    assert torch.allclose(smooth3d(const, 1.5), const)  # normalised: a constant stays constant
    x = torch.rand(1, 2, 10, 10, 10)
    assert smooth3d(x, 1.0).std() < x.std()

    ctx = CurriculumContext(["a"], 10, 1, 0, np.zeros(1))
    cbs = Smoothing(ctx, Smoothing.parse_options({"sigma0": "1.0", "decay": "0.5", "floor": "0.3"}))
    net = SegNet("tiny")
    cbs.wrap_model(net)
    net.train()
    inp = torch.rand(1, 5, 16, 16, 16)
    torch.manual_seed(0)
    smoothed = net(inp)
    net.eval()
    plain_eval = net(inp)
    assert cbs.handles and not torch.allclose(smoothed[:, 0], plain_eval, atol=1e-4)  # on while training only
    for epoch in range(2):
        cbs.end_epoch(epoch)  # sigma 0.5, then 0.25 < floor: filter removed
    assert not cbs.handles and cbs.sigma == pytest.approx(0.25)
    net.train()
    torch.manual_seed(0)
    assert torch.allclose(net(inp), SegNet.forward(net, inp))


def test_options_are_typed_and_checked():
    cfg = build_config({"curriculum": "predefined", "pacing": "root", "start_fraction": "0.25"})
    opt = get_curriculum("predefined").parse_options(cfg.curriculum_options)
    assert opt.pacing == "root" and opt.start_fraction == 0.25
    with pytest.raises(ConfigError, match="unknown pacing 'cubic'"):
        build_config({"curriculum": "predefined", "pacing": "cubic"})
    with pytest.raises(ConfigError, match="start_fraction=1.5"):
        build_config({"curriculum": "random", "start_fraction": "1.5"})
    with pytest.raises(ConfigError, match="needs teacher_uri"):
        build_config({"curriculum": "transfer_teacher"})
    with pytest.raises(ConfigError, match="unknown parameter 'sigma0'.*'none'"):
        build_config({"curriculum": "none", "sigma0": "2"})


def test_predefined_random_and_anti_order():
    diff = np.array([0.5, 0.1, 0.9, 0.3])
    ctx = CurriculumContext(list("abcd"), 10, 1, 0, diff)
    opts = {"start_fraction": "0.5", "full_at": "1.0"}
    easy = get_curriculum("predefined")(ctx, get_curriculum("predefined").parse_options(opts))
    hard = get_curriculum("anti")(ctx, get_curriculum("anti").parse_options(opts))
    assert easy.epoch_weights(0).tolist() == [0, 1, 0, 1]
    assert hard.epoch_weights(0).tolist() == [1, 0, 1, 0]
    assert easy.epoch_weights(5).sum() == 3 and easy.epoch_weights(10).sum() == 4
    rnd = get_curriculum("random")(ctx, get_curriculum("random").parse_options(opts))
    assert rnd.epoch_weights(0).sum() == 2


VARIANT_OPTIONS = {
    "predefined": {"pacing": "root", "start_fraction": "0.5"},
    "self_paced": {"scheme": "linear"},
    "rl_teacher": {"buckets": "2"},
    "smoothing": {"sigma0": "1.0", "decay": "0.5"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_variant_as_an_mlflow_run(name, tiny_cohort, tmp_path):
    params = {"curriculum": name, "data_dir": str(tiny_cohort), "model": "tiny", "epochs": "2", "steps_per_epoch": "2",
              "patch_size": "32", "spacing_mm": "10", **VARIANT_OPTIONS.get(name, {})}
    if name == "transfer_teacher":
        teacher = tmp_path / "teacher.pt"
        torch.save({"model": SegNet("tiny").state_dict(), "preset": "tiny"}, teacher)
        params["teacher_uri"] = str(teacher)
    sub = mlflow.projects.run(str(REPO), entry_point="main", env_manager="local", experiment_name="variants",
                              parameters=params)
    assert sub.wait()
    client = mlflow.MlflowClient()
    run = client.get_run(sub.run_id)
    assert run.data.tags["clips.curriculum"] == name and run.data.tags["clips.paper"]
    for key, value in VARIANT_OPTIONS.get(name, {}).items():
        logged = run.data.params[f"curriculum.{key}"]
        assert logged == value or float(logged) == float(value), key
    assert [m.step for m in client.get_metric_history(sub.run_id, "fraction_in_play")] == [0, 1]
    state = {k for k in run.data.metrics if k.startswith("curriculum.")}
    expected = {"predefined": "curriculum.pacing_fraction", "random": "curriculum.pacing_fraction",
                "anti": "curriculum.pacing_fraction", "transfer_teacher": "curriculum.pacing_fraction",
                "self_paced": "curriculum.lambda", "rl_teacher": "curriculum.p_bucket_1",
                "smoothing": "curriculum.sigma"}.get(name)
    if expected:
        assert expected in state
    long = client.load_table(run.info.experiment_id, "tables/curriculum_long.json", run_ids=[sub.run_id])
    assert list(long.columns) == ["patient_id", "epoch", "difficulty", "included", "weight", "loss"]
    assert len(long) == 2 * 4 and set(long["epoch"]) == {0, 1}  # 4 training patients x 2 epochs
    diff = client.load_table(run.info.experiment_id, "tables/difficulty.json", run_ids=[sub.run_id])
    assert len(diff) == 4 and "score_cohort" in diff
    if name == "transfer_teacher":
        assert (diff["difficulty_source"] == "teacher_loss").all() and "teacher_dice" in diff
    figs = {a.path for a in client.list_artifacts(sub.run_id, "figures")}
    assert "figures/curriculum.png" in figs
