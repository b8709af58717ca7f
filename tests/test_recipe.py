"""The study recipe's options and the selection rules of issue #39: pooled Dice, forced foreground, augmentation in
millimetres, the control arm of progressive_patch, the validation score, collapse tagging, chunked studies and
the union of chunk tables."""
from __future__ import annotations

from collections import Counter

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from test_curricula import tiny_cases

from clips.config import build_config
from clips.curricula import CurriculumContext, get_curriculum
from clips.data.augment import Augmentation
from clips.data.loader import PatchDataset
from clips.data.sampling import PatchSampler
from clips.losses import LossWeights, TMTVLoss
from clips.metrics.cohort import CohortEvaluation
from clips.metrics.patient import COLUMNS
from clips.study.config import StudyConfig
from clips.training.batch_plan import plan_batch
from clips.training.trainer import validation_score


# ----------------------------------------------------------------------------- pooled Dice
def _batch(n=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 2, size, size, size, generator=g)
    target = (torch.rand(n, 1, size, size, size, generator=g) > 0.8).long()
    target[0] = 0  # one lesion-free patch: a pooled Dice still has a gradient there
    return logits, target, torch.rand(n, 5, size, size, size, generator=g)


def test_pooled_dice_with_weights_equals_the_hand_computation():
    logits, target, image = _batch()
    loss = TMTVLoss(LossWeights(batch_dice=True))
    terms = loss(logits, target, image)
    w = torch.tensor([0.5, 1.0, 2.0])
    p, g = logits.softmax(1)[:, 1], (target[:, 0] == 1).float()
    inter = (p * g).flatten(1).sum(1)
    vol = (p + g).flatten(1).sum(1)
    pooled = 1 - (2 * (w * inter).sum() + 1e-5) / ((w * vol).sum() + 1e-5)
    rest = (w * (1e-5 * terms["ms"] + 2.0 * terms["ce"])).mean()
    assert loss.objective(terms, w).item() == pytest.approx((rest + pooled).item(), rel=1e-5)
    # the lesion-free patch's false positives move the pooled loss: a gradient where per-sample Dice has none
    lg = logits.clone().requires_grad_(True)
    loss.objective(loss(lg, target, image), torch.ones(3)).backward()
    assert lg.grad[0, 1].abs().sum() > 0


def test_pooled_dice_of_a_batch_of_one_is_the_per_sample_loss():
    logits, target, image = _batch(n=1)
    target[0, 0, 2:4, 2:4, 2:4] = 1
    pooled, per_sample = TMTVLoss(LossWeights(batch_dice=True)), TMTVLoss()
    one = torch.ones(1)
    assert pooled.objective(pooled(logits, target, image), one).item() == pytest.approx(
        per_sample.objective(per_sample(logits, target, image), one).item(), rel=1e-5)


def test_pooled_dice_with_deep_supervision_pools_each_head():
    logits, target, image = _batch()
    heads = torch.stack([logits, logits * 0.5], 1)  # (N, H, 2, ...)
    loss = TMTVLoss(LossWeights(batch_dice=True))
    terms = loss(heads, target, image)
    w = torch.ones(3)
    one = [loss.objective(loss(h, target, image), w) for h in (logits, logits * 0.5)]
    assert loss.objective(terms, w).item() == pytest.approx((2 / 3 * one[0] + 1 / 3 * one[1]).item(), rel=1e-5)


# ----------------------------------------------------------------------------- forced foreground
def test_the_batch_rule_puts_a_lesion_centred_patch_in_every_batch():
    cases = tiny_cases(n=4, size=24)
    patches = PatchDataset(PatchSampler(cases, (8, 8, 8), 0.3, "batch"), Augmentation("none"))
    none = get_curriculum("none")
    cur = none(CurriculumContext([c.patient_id for c in cases], 1, 1, 0, np.zeros(4)), none.parse_options({}))
    rng = np.random.default_rng(0)
    for _ in range(50):
        plan = plan_batch(cur, patches.sampler, rng, np.ones(4), 2)
        assert [item[2] for item in plan] == [True, False]  # round(2 x 0.3) = 1, at least one
        labels = [patches[item][2] for item in plan]
        assert labels[0].sum() > 0  # centred on a lesion voxel
    # by the patch rule at the same rate, some batches have no lesion at all
    patches.sampler.fg_rule = "patch"
    empty = sum(all(patches[item][2].sum() == 0 for item in plan_batch(cur, patches.sampler, rng, np.ones(4), 2))
                for _ in range(50))
    assert empty > 0


def test_an_unknown_foreground_rule_is_one_line():
    from clips.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown fg_sampling 'sometimes'; known: patch, batch"):
        build_config({"fg_sampling": "sometimes"})


# ----------------------------------------------------------------------------- augmentation in millimetres
def _names(aug):
    return [(type(t).__name__, tuple(t.keys)) for t in aug.transforms]


def test_physical_augmentation_sizes_its_scales_in_mm_and_leaves_the_suv_alone():
    coarse, fine = Augmentation("physical", (8, 8, 8)), Augmentation("physical", (2, 2, 2))
    kinds = dict(_names(coarse))
    for name in ("RandGaussianNoised", "RandScaleIntensityd", "RandScaleIntensityFixedMeand", "RandAdjustContrastd"):
        assert kinds[name] == ("ct",), name  # intensity transforms touch the CT channels only
    assert "RandSimulateLowResolutiond" not in kinds and "RandGaussianSmoothd" not in kinds  # finer than 8 mm
    fine_t = {type(t).__name__: t for t in fine.transforms}
    assert fine_t["RandSimulateLowResolutiond"].sim_lowres_tfm.zoom_range == (0.5, 1.0)  # 2 mm -> at most 4 mm
    # the default preset simulates 16 mm at an 8 mm grid; physical does not
    assert "RandSimulateLowResolutiond" in dict(_names(Augmentation("default", (8, 8, 8))))
    rng = np.random.default_rng(0)
    image = rng.random((5, 16, 16, 16), dtype=np.float32)
    label = (rng.random((16, 16, 16)) > 0.9).astype(np.int64)
    changed_ct = False
    for seed in range(40):
        out, lab = coarse(image, label, seed)
        assert out.shape == image.shape and out.dtype == np.float32 and set(np.unique(lab)) <= {0, 1}
        moved = not np.allclose(out[[0, 2, 3]], image[[0, 2, 3]])
        if not moved:  # no spatial transform: the PET channels are exactly the input's
            assert np.array_equal(out[[1, 4]], image[[1, 4]])
        changed_ct |= moved
    assert changed_ct


# ----------------------------------------------------------------------------- the control arm
def _schedule(name, seed=0, epochs=12):
    cls = get_curriculum(name)
    cur = cls(CurriculumContext(["a", "b"], epochs, 4, seed, np.zeros(2)), cls.parse_options({}))
    return [cur.sample_shape(e, (48, 48, 48), 2) for e in range(epochs)]


def test_patch_mix_trains_progressive_patchs_stages_in_another_order():
    grown, mixed = _schedule("progressive_patch"), _schedule("patch_mix")
    assert Counter(grown) == Counter(mixed)  # the same patches, batches and voxels, epoch for epoch in count
    assert grown == sorted(grown, key=lambda s: s[0]) and mixed != grown  # only the order differs
    assert _schedule("patch_mix", seed=0) == mixed and _schedule("patch_mix", seed=1) != mixed  # fixed by the seed


# ----------------------------------------------------------------------------- the validation score
def _table(rows):
    table = pd.DataFrame([dict.fromkeys(COLUMNS, np.nan) | r for r in rows], columns=COLUMNS)
    return CohortEvaluation(table)


def test_a_lesion_free_validation_patient_counts_symmetrically():
    lesion = {"patient_id": "L", "dice": 0.6, "tmtv_true_ml": 10.0, "tmtv_pred_ml": 8.0}
    empty = {"patient_id": "F", "dice": np.nan, "tmtv_true_ml": 0.0, "tmtv_pred_ml": 0.0}
    false_positive = {"patient_id": "F", "dice": 0.0, "tmtv_true_ml": 0.0, "tmtv_pred_ml": 3.0}
    right = validation_score(_table([lesion, empty]))
    wrong = validation_score(_table([lesion, false_positive]))
    assert right.dice == pytest.approx(0.8) and wrong.dice == pytest.approx(0.3)  # 1 and 0, never skipped
    assert right.lesion_dice == wrong.lesion_dice == pytest.approx(0.6) and right.found_lesion
    nothing = validation_score(_table([lesion | {"dice": 0.0, "tmtv_pred_ml": 0.0}, empty]))
    assert nothing.dice == pytest.approx(0.5) and not nothing.found_lesion  # scores, but found no lesion


def test_a_collapse_is_a_lost_lesion_or_none_ever_found_not_a_slow_start():
    from clips.training.collapse import collapse_epoch

    slow_start = [(2, False), (5, False), (8, False), (11, True), (14, True)]  # seen in the recipe pilot
    assert collapse_epoch(slow_start, 3) == collapse_epoch(slow_start, 3, finished=True) == -1
    lost = [(2, True), (5, False), (8, False), (11, False), (14, False)]
    assert collapse_epoch(lost[:3], 3) == -1 and collapse_epoch(lost[:4], 3) == 5
    never = [(2, False), (5, False)]
    assert collapse_epoch(never, 3) == -1 and collapse_epoch(never, 3, finished=True) == 2


@pytest.mark.slow
def test_a_run_that_never_finds_a_lesion_is_tagged_collapsed_and_delivers_its_last_epoch(tiny_cohort, tmp_path):
    """A network that predicts background everywhere (its output bias says so, lr 0 keeps it): no best
    checkpoint, the last epoch delivered by the stated rule, the collapse tagged; best and last both evaluated."""
    from clips.models import build_network
    from clips.training.trainer import train

    net = build_network("tiny")
    head = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d) and m.out_channels == 2]
    for conv in head:
        torch.nn.init.zeros_(conv.weight)
        conv.bias.data = torch.tensor([10.0, -10.0])
    torch.save({"model": net.state_dict(), "preset": "tiny"}, tmp_path / "background.pt")
    cfg = build_config({"data_dir": str(tiny_cohort), "model": "tiny", "epochs": "2", "steps_per_epoch": "1",
                        "patch_size": "32", "spacing_mm": "10", "lr": "0", "collapse_after": "2",
                        "init_weights": str(tmp_path / "background.pt")})
    result = train(cfg, log=lambda *_: None)
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["clips.collapsed"] == "0"  # the first of two validations in a row that found none
    assert run.data.tags["clips.selected"] == "last epoch (no validation found a lesion)"
    assert result.best_epoch == -1
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "checkpoints")}
    assert arts == {"checkpoints/last.pt"}
    m = run.data.metrics
    assert m["test_last_dice_mean"] == m["test_dice_mean"] == 0.0 and m["val_dice_lesion"] == 0.0
    assert m["best_epoch"] == 1  # the metric names the epoch the delivered weights come from: the last


# ----------------------------------------------------------------------------- chunks
def test_a_chunk_trains_only_its_seeds():
    from click.testing import CliRunner

    from clips.cli.study import SeedRange

    assert SeedRange().convert("4-7", None, None) == (4, 4) and SeedRange().convert("3", None, None) == (0, 3)
    for bad in ("7-4", "0", "a-b", "-1"):
        with pytest.raises(Exception, match="N .at least 1. or A-B"):
            SeedRange().convert(bad, None, None)
    chunk = StudyConfig(curricula=["none", "self_paced"], first_seed=4, seeds=4, folds=3)
    assert {j.seed for j in chunk.jobs()} == {4, 5, 6, 7} and chunk.jobs()[0][:3] == ("none", 0, 4)
    assert chunk.seeds_through() == 8
    from clips.cli import cli

    res = CliRunner().invoke(cli, ["study", "--seeds", "9-3", "--exploratory", "true"])
    assert res.exit_code == 2 and "'9-3': N (at least 1) or A-B" in res.output


def _pp(seeds, shift=0.0):
    rng = np.random.default_rng(seeds[0])
    rows = [{"patient_id": f"P{p}", "curriculum": arm, "fold": p % 3, "seed": s,
             "dice": float(np.clip(0.5 + (shift if arm == "x" else 0) + rng.normal(0, 0.1), 0, 1)),
             "hard": int(p < 2)}
            for s in seeds for arm in ("none", "x") for p in range(9)]
    return pd.DataFrame(rows)


def test_compare_of_chunk_tables_equals_the_analysis_of_their_union(tmp_path):
    from clips.study.compare import compare_table

    a, b = _pp([0, 1]), _pp([2, 3], shift=0.05)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    pd.concat([a, b]).to_csv(tmp_path / "ab.csv", index=False)
    chunks = compare_table(f"{tmp_path / 'a.csv'},{tmp_path / 'b.csv'}", tmp_path / "chunks", ["x:none"])
    union = compare_table(tmp_path / "ab.csv", tmp_path / "union", ["x:none"])
    pd.testing.assert_frame_equal(chunks["paired"], union["paired"])
    pd.testing.assert_frame_equal(chunks["summary"], union["summary"])
    with pytest.raises(Exception, match="is in the table more than once .a.csv, ab.csv."):
        compare_table(f"{tmp_path / 'a.csv'},{tmp_path / 'ab.csv'}", tmp_path / "twice")


def test_a_table_of_recipes_compares_its_recipes_and_counts_collapses(tmp_path):
    from clips.study.compare import compare_table

    t = pd.concat([_pp([0, 1, 2]).query("curriculum == 'none'").assign(recipe="current"),
                   _pp([0, 1, 2], shift=0.1).query("curriculum == 'x'").assign(curriculum="none", recipe="new")])
    t["collapsed"] = ((t["recipe"] == "current") & (t["seed"] == 1) & (t["fold"] == 0)).astype(int)
    t["best_epoch"] = np.where(t["recipe"] == "current", 8, 20)
    t["tmtv_true_ml"] = np.where(t["patient_id"] == "P0", 0.0, 12.0)  # one lesion-free patient
    t["fp_ml"] = np.where(t["recipe"] == "current", 150.0, 5.0)
    t.to_csv(tmp_path / "recipes.csv", index=False)
    result = compare_table(tmp_path / "recipes.csv", tmp_path / "out", ["new:current"], baseline="current",
                           arm_column="recipe")
    paired = result["paired"].set_index(["contrast", "subset", "measure"])
    assert paired.loc[("new vs current", "all", "dice"), "mean_difference"] == pytest.approx(
        t.groupby("recipe")["dice"].mean().diff().iloc[-1], abs=0.02)
    assert "Collapsed runs" in " ".join(result["statements"]) and "current 1 of 9 runs" in " ".join(
        result["statements"])
    summary = result["summary"].set_index(["variant", "subset"])
    assert summary.loc[("current", "all"), "collapsed_runs"] == 1 and summary.loc[("new", "all"), "collapsed_runs"] == 0
    assert summary.loc[("current", "all"), "selected_epoch_median"] == 8
    assert summary.loc[("new", "all"), "fp_ml_lesion_free"] == 5.0
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "| collapsed runs | selected epoch (median) | false positives, lesion-free patients (ml) |" in md
