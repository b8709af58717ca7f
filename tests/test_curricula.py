"""Curriculum building blocks against their formulas, and each variant as a real tracked run."""
import dataclasses
import json
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
from clips.data.augment import Augmentation
from clips.data.loader import PatchDataset, epoch_batches
from clips.data.preprocess import Case
from clips.data.sampling import PatchSampler
from clips.errors import ConfigError
from clips.losses import TMTVLoss
from clips.models import SegNet
from clips.training.step import Schedule, build_curriculum, take_steps
from clips.tuning.space import load_space, ramp_epochs

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind,t,expected", [
    ("linear", 0, 0.2), ("linear", 5, 0.2 + 0.8 * 0.5), ("linear", 10, 1.0), ("linear", 15, 1.0),
    ("root", 5, math.sqrt(0.04 + 0.96 * 0.5)),
    ("root_p", 5, (0.2 ** 3 + (1 - 0.2 ** 3) * 0.5) ** (1 / 3)),
    ("geometric", 5, 2 ** (math.log2(0.2) - math.log2(0.2) * 0.5)),
    # 0.2 needs 3 steps of x1.9 to reach 1, spread over full = 10 epochs: steps at t = 10/3, 20/3, 10
    ("exponential_step", 0, 0.2), ("exponential_step", 4, 0.2 * 1.9), ("exponential_step", 7, 0.2 * 1.9 ** 2),
    ("exponential_step", 10, 1.0),
])
def test_pacing_formulas(kind, t, expected):
    assert pace(kind, t, start=0.2, full=10, p=3, increase=1.9) == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["linear", "root", "root_p", "geometric", "exponential_step"])
def test_pacing_is_monotone_and_ends_at_one_at_full(kind):
    g = [pace(kind, t, 0.1, 12, p=2.5, increase=2.0) for t in range(30)]
    assert all(b >= a for a, b in zip(g, g[1:])) and 0 < g[0] <= 0.1 + 1e-12
    assert g[11] < 1.0 and g[12] == 1.0  # every pacing, exponential_step included, reaches 1 exactly at full


def test_exponential_step_follows_full_at():
    """Its step length follows from full_at: the curriculum is not over after two epochs of 24."""
    opt = get_curriculum("predefined").parse_options({"pacing": "exponential_step", "start_fraction": "0.3",
                                                      "full_at": "0.5"})
    g = [opt.fraction(t, 24) for t in range(24)]
    assert g[2] < 1.0 and g[11] < 1.0 and g[12] == 1.0


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
    # mixture (Zhao et al. 2015) with lambda = 1, gamma = 1: full weight up to 1/4, then 1/sqrt(l) - 1, zero from 1 on
    mix = spl_weights(losses, 1.0, "mixture", gamma=1.0)
    assert mix.tolist() == pytest.approx([1.0, 1.0, 1 / math.sqrt(0.5) - 1, 0.0, 0.0])
    # mixture_jiang (Jiang et al. 2014), zeta = lambda = 1: full weight up to 1/2, then zeta (1/l - 1/lambda)
    jiang = spl_weights(np.array([0.25, 0.5, 0.8, 1.0]), 1.0, "mixture_jiang", gamma=1.0)
    assert jiang.tolist() == pytest.approx([1.0, 1.0, 1 / 0.8 - 1, 0.0])


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
        assert len(gaussian_kernel1d(sigma, taps=3)) == 3  # the paper's kernel
    const = torch.full((1, 2, 6, 7, 8), 3.0)
    assert torch.allclose(smooth3d(const, 1.5, taps=3), const)  # normalised: a constant stays constant
    x = torch.rand(1, 2, 10, 10, 10)
    assert smooth3d(x, 1.0, taps=3).std() < x.std()


def test_smoothing_validates_the_network_as_trained():
    """While the filter is on, evaluation mode sees the smoothed network (as CBS evaluates it), and
    such an epoch cannot become the best checkpoint; after the filter is gone, the plain network."""
    ctx = CurriculumContext(["a"], 10, 1, 0, np.zeros(1))
    cbs = Smoothing(ctx, Smoothing.parse_options({"sigma0": "1.0", "decay": "0.5", "floor": "0.3"}))
    assert cbs.opt.taps == 3
    net = SegNet("tiny")
    cbs.wrap_model(net)
    inp = torch.rand(1, 5, 16, 16, 16)
    net.train()
    smoothed_train = net(inp)[:, 0]
    net.eval()
    smoothed_eval = net(inp)
    assert torch.allclose(smoothed_eval, smoothed_train, atol=1e-5)
    assert not cbs.model_is_final()
    for epoch in range(2):
        cbs.end_epoch(epoch)  # sigma 0.5, then 0.25 < floor: filter removed
    assert not cbs.handles and cbs.sigma == pytest.approx(0.25) and cbs.model_is_final()
    assert not torch.allclose(net(inp), smoothed_eval, atol=1e-4)  # the plain network now


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


# The variant that goes through `mlflow run` itself (MLproject hands its undeclared curriculum options to `clips
# train`); the others run the same command line, `clips train -P ...`, in this process: two interpreters' start-up
# (mlflow run, then python -m clips) cost each variant more than its tiny training.
THROUGH_MLPROJECT = "predefined"


def _train_variant(name: str, params: dict) -> str:
    """One tiny training of a variant, as `mlflow run` or as `clips train`; the run id."""
    if name == THROUGH_MLPROJECT:
        sub = mlflow.projects.run(str(REPO), entry_point="main", env_manager="local", experiment_name="variants",
                                  parameters=params)
        assert sub.wait()
        return sub.run_id
    from click.testing import CliRunner

    from clips.cli import cli

    args = ["train", "--experiment", "variants"] + [a for k, v in params.items() for a in ("-P", f"{k}={v}")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return next(line.split()[1].rstrip(":") for line in res.output.splitlines() if line.startswith("run "))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_variant_as_a_tracked_run(name, tiny_cohort, tmp_path):
    params = {"curriculum": name, "data_dir": str(tiny_cohort), "model": "tiny", "epochs": "2", "steps_per_epoch": "2",
              "patch_size": "32", "spacing_mm": "10", **VARIANT_OPTIONS.get(name, {})}
    if REGISTRY[name].needs_teacher:
        teacher = tmp_path / "teacher.pt"
        torch.save({"model": SegNet("tiny").state_dict(), "preset": "tiny"}, teacher)
        params["teacher_uri"] = str(teacher)
    run_id = _train_variant(name, params)
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert mlflow.get_experiment(run.info.experiment_id).name == "variants"
    assert run.data.tags["clips.curriculum"] == name and run.data.tags["clips.paper"]
    for key, value in VARIANT_OPTIONS.get(name, {}).items():
        logged = run.data.params[f"curriculum.{key}"]
        assert logged == value or float(logged) == float(value), key
    assert [m.step for m in client.get_metric_history(run_id, "fraction_in_play")] == [0, 1]
    state = {k for k in run.data.metrics if k.startswith("curriculum.")}
    expected = {"predefined": "curriculum.pacing_fraction", "random": "curriculum.pacing_fraction",
                "anti": "curriculum.pacing_fraction", "transfer_teacher": "curriculum.pacing_fraction",
                "self_paced": "curriculum.lambda", "rl_teacher": "curriculum.p_bucket_1",
                "smoothing": "curriculum.sigma", "progressive_patch": "curriculum.patch_size"}.get(name)
    if expected:
        assert expected in state
    if name == "progressive_patch":  # grows, and ends at the run's patch size
        edges = [m.value for m in client.get_metric_history(run_id, "curriculum.patch_size")]
        assert edges == sorted(edges) and edges[0] < edges[-1] == 32
    long = client.load_table(run.info.experiment_id, "tables/curriculum_long.json", run_ids=[run_id])
    assert list(long.columns) == ["patient_id", "epoch", "difficulty", "included", "weight", "loss"]
    assert len(long) == 2 * 4 and set(long["epoch"]) == {0, 1}  # 4 training patients x 2 epochs
    diff = client.load_table(run.info.experiment_id, "tables/difficulty.json", run_ids=[run_id])
    assert len(diff) == 4 and "score_cohort" in diff
    if REGISTRY[name].needs_teacher:
        assert (diff["difficulty_source"] == "teacher_loss").all() and "teacher_dice" in diff
    figs = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert "figures/curriculum.png" in figs


# ----------------------------------------------------------------------------- the plug-in contract
def tiny_cases(n=5, size=16, seed=0):
    """In-memory preprocessed cases: noise, and 1 to 3 bright cubic lesions each."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        image = rng.random((5, size, size, size), dtype=np.float32) * 0.2
        label = np.zeros((size, size, size), np.uint8)
        for _ in range(1 + i % 3):
            c = rng.integers(2, size - 4, 3)
            label[c[0]:c[0] + 2 + i % 2, c[1]:c[1] + 2, c[2]:c[2] + 2] = 1
        image[:, label > 0] += 0.6
        cases.append(Case(f"P{i}", image, label, float(label.sum())))
    return cases


def run_hooks(cls, options, epochs=3, steps=2, seed=0):
    """The loop's calls of every hook, on the real step function, for a few epochs."""
    cases = tiny_cases()
    sampler = PatchSampler(cases, (16, 16, 16), 0.7)
    loss_fn = TMTVLoss()
    torch.manual_seed(seed)
    cur, model = build_curriculum(cls, options, Schedule([c.patient_id for c in cases], epochs, steps, seed, 2),
                                  np.arange(len(cases), dtype=float), sampler, loss_fn, SegNet("tiny"))
    patches = PatchDataset(sampler, Augmentation("none"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        w = np.asarray(cur.epoch_weights(epoch), float)
        assert w.shape == (len(cases),) and (w >= 0).all() and w.sum() > 0, f"{cls.name}: epoch weights {w}"
        sampler.patch, batch = cur.sample_shape(epoch, (16, 16, 16), 2)
        assert len(sampler.patch) == 3 and all(16 <= p <= 16 and p % 8 == 0 for p in sampler.patch) and batch >= 1
        model.train()
        for idx, terms in take_steps(model, cur, patches, rng, w, batch, steps, loss_fn, opt):
            assert torch.isfinite(terms["total"]).all() and all(w[np.asarray(idx)] > 0)
        cur.end_epoch(epoch)
        pw = np.asarray(cur.patient_weights(w), float)
        assert pw.shape == w.shape and (pw >= 0).all()
        measured = cur.measured_losses()
        assert measured is None or np.asarray(measured).shape == w.shape
        assert all(np.isfinite(float(v)) for v in cur.log_state().values())
        assert isinstance(cur.model_is_final(), bool)
    cur.release()
    return cur, cur.ctx


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_curriculum_keeps_the_contract(name):
    """What registering a curriculum promises: hooks that run, a state that round-trips, a search space when it
    has options, and a ramp that tuning can read."""
    cls = REGISTRY[name]
    assert cls.name == name and cls.paper
    cfg = build_config(cls.stand_in_values() | {"curriculum": name})
    assert cfg.curriculum == name
    options = cls.parse_options(cfg.curriculum_options)
    cur, ctx = run_hooks(cls, options)
    state = cur.state_dict()
    again = cls(ctx, options)
    again.load_state_dict(state)
    assert json.dumps(again.state_dict(), sort_keys=True, default=str) == json.dumps(state, sort_keys=True, default=str)
    if dataclasses.fields(cls.Options):
        space = load_space(name)
        assert space.dims and ramp_epochs(space, 20) >= 0
    assert 0 <= cls.ramp_epochs(options, 20) <= 20


def test_self_paced_acts_as_a_curriculum_while_the_losses_fall():
    """The default schedule follows the current losses: even when every loss falls below the first
    epoch's median, the hard scheme keeps out patients until full_at, then includes all."""
    cls = get_curriculum("self_paced")
    losses = np.linspace(1.0, 2.0, 10)
    epoch = {"t": 0}
    ctx = CurriculumContext([f"p{i}" for i in range(10)], 10, 1, 0, np.zeros(10),
                            score_patients=lambda: losses * 0.3 ** epoch["t"])  # losses fall fast
    sp = cls(ctx, cls.parse_options({}))
    fractions = []
    for t in range(10):
        epoch["t"] = t
        fractions.append(float(np.mean(sp.epoch_weights(t) > 0)))
    assert fractions[0] == pytest.approx(0.5, abs=0.1)  # quantile0
    assert all(f < 1 for f in fractions[:4]) and fractions[5:] == [1.0] * 5  # full_at = 0.5 of 10 epochs
    assert fractions == sorted(fractions)


def test_soft_weights_scale_a_sample_not_the_batch():
    """Two half-weight samples count half as much as two full-weight ones (no renormalisation)."""
    class Half(get_curriculum("none")):
        def loss_weights(self, indices, losses):
            return torch.full_like(losses, 0.5)

    grads = {}
    for cls in (get_curriculum("none"), Half):
        torch.manual_seed(0)
        net = SegNet("tiny")
        sampler = PatchSampler(tiny_cases(2), (16, 16, 16), 1.0)
        cur = cls(CurriculumContext(["P0", "P1"], 1, 1, 0, np.zeros(2)), cls.parse_options({}))
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        list(take_steps(net, cur, PatchDataset(sampler, Augmentation("none")), np.random.default_rng(0), np.ones(2), 2,
                        1, TMTVLoss(), opt))
        grads[cls] = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    assert torch.allclose(grads[Half], 0.5 * grads[get_curriculum("none")], rtol=1e-4, atol=1e-8)


def test_self_paced_weights_are_relative_to_the_epoch():
    cls = get_curriculum("self_paced")
    ctx = CurriculumContext(list("abcd"), 10, 1, 0, np.zeros(4), score_patients=lambda: np.array([1.0, 2, 3, 4]))
    sp = cls(ctx, cls.parse_options({"scheme": "linear", "quantile0": "1.0"}))
    sp.epoch_weights(0)
    w = sp.loss_weights(np.arange(4), torch.ones(4)).numpy()
    v = sp.v
    assert w[v > 0].mean() == pytest.approx(1.0) and w.tolist() == pytest.approx((v / v[v > 0].mean()).tolist())


def test_scoring_patches_cover_every_lesion_and_background():
    """A patient with lesions far apart is scored on each of them, plus a background patch."""
    image = np.zeros((5, 40, 20, 20), np.float32)
    label = np.zeros((40, 20, 20), np.uint8)
    label[2:5, 8:11, 8:11] = 1
    label[34:37, 8:11, 8:11] = 1
    sampler = PatchSampler([Case("p", image, label, 1.0)], (12, 12, 12), 0.5)
    centres = sampler.scoring_centres(0)
    assert len(centres) == 3
    x, y = sampler.scoring_batch(0)
    assert x.shape == (3, 5, 12, 12, 12)
    assert y[0].sum() == 27 and y[1].sum() == 27  # each lesion patch holds a whole lesion
    assert centres == sampler.scoring_centres(0)  # fixed across epochs


def test_rl_teacher_loss_gain_is_zero_without_an_update():
    """The reward compares the same loss (training mode, every head) before and after the step."""
    cases = tiny_cases(2)
    sampler = PatchSampler(cases, (16, 16, 16), 1.0)
    loss_fn = TMTVLoss()
    cur, net = build_curriculum(get_curriculum("rl_teacher"), get_curriculum("rl_teacher").parse_options({}),
                                Schedule(["P0", "P1"], 1, 1, 0, 2), np.zeros(2), sampler, loss_fn, SegNet("tiny"))
    _, x, y = next(epoch_batches(PatchDataset(sampler, Augmentation("none")), iter([[(0, 1), (1, 2)]]), 0))
    ctx = cur.ctx
    net.train()
    before = loss_fn(net(x), y, x)["total"].detach()
    assert torch.allclose(before, ctx.batch_losses(x, y), atol=1e-6)


@pytest.mark.parametrize("mode", ["performance", "resource_efficient"])
def test_progressive_patch_grows_to_the_full_size(mode):
    cls = get_curriculum("progressive_patch")
    ctx = CurriculumContext(["a"], 12, 1, 0, np.zeros(1))
    cur = cls(ctx, cls.parse_options({"mode": mode}))
    shapes = [cur.sample_shape(e, (48, 48, 40), 2) for e in range(12)]
    edges = [max(p) for p, _ in shapes]
    assert edges[0] == 16 and edges == sorted(edges) and shapes[-1] == ((48, 48, 40), 2)
    # the paper's schedule: 5 stages (16, 24, ..., 48) of equal length (12 / 5 epochs, rounded down), the full
    # size for the last fifth
    assert [edges.count(e) for e in (16, 24, 32, 40, 48)] == [3, 2, 3, 2, 2]
    assert all(p % 8 == 0 for patch, _ in shapes for p in patch)
    batches = [b for _, b in shapes]
    if mode == "performance":  # about a full batch's voxels per step, within the memory cap
        assert batches[0] == 16 and batches[-1] == 2 and batches == sorted(batches, reverse=True)  # 2 x 27, capped
    else:
        assert set(batches) == {2}
    early = cls(ctx, cls.parse_options({"full_at": "0.5", "start": "24"}))
    assert [max(early.sample_shape(e, (48,) * 3, 2)[0]) for e in (0, 5, 6, 11)] == [24, 40, 48, 48]
    short = cls(CurriculumContext(["a"], 2, 1, 0, np.zeros(1)), cls.parse_options({}))
    assert short.sample_shape(1, (32,) * 3, 2)[0] == (32, 32, 32)  # a short run still ends at the full size


def test_progressive_patch_cycles_one_axis_per_stage_as_the_papers_code():
    from clips.curricula._progressive_patch import stages

    cyc = stages(16, (48, 48, 48), "cycle")
    assert len(cyc) == 13 and cyc[0] == (16, 16, 16) and cyc[-1] == (48, 48, 48)
    assert cyc[1:4] == [(24, 16, 16), (24, 24, 16), (24, 24, 24)]
    assert all(sum(b != a for a, b in zip(p, q)) == 1 and max(q) - max(p) <= 8 for p, q in zip(cyc, cyc[1:]))
    assert stages(16, (48, 48, 48)) == [(s,) * 3 for s in (16, 24, 32, 40, 48)]  # the default grows all axes
    assert stages(16, (48, 32, 40), "cycle")[-1] == (48, 32, 40)  # an axis at its final size is skipped
    cls = get_curriculum("progressive_patch")
    cur = cls(CurriculumContext(["a"], 26, 1, 0, np.zeros(1)), cls.parse_options({"axes": "cycle"}))
    assert cur.sample_shape(2, (48, 48, 48), 2)[0] == (24, 16, 16)
    with pytest.raises(ConfigError, match="unknown progressive_patch axes"):
        cls.parse_options({"axes": "spiral"})
