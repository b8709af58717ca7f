"""The metric suite against hand-computed answers and against an independent dense implementation."""
import math

import numpy as np
import pytest
from scipy import ndimage

from benchmarks.reference_metrics import reference_patient
from clips.metrics.patient import COLUMNS, COUNT_COLUMNS, EvalSettings, evaluate_patient
from clips.metrics.sparse import label_components, surface_corners

NO_THRESHOLD = EvalSettings(suv_threshold=None)


def _vol(shape=(30, 30, 30)):
    return np.zeros(shape, np.uint8)


def _hot(shape=(30, 30, 30), value=10.0):
    return np.full(shape, value, np.float32)


def _same(a, b, tol=1e-6):
    for c in COLUMNS[1:]:
        x, y = a[c], b[c]
        if isinstance(x, float) and math.isnan(x):
            assert math.isnan(y), c
        elif c in COUNT_COLUMNS:
            assert x == y, c
        else:
            assert x == pytest.approx(y, rel=tol, abs=tol), c


def test_two_cubes_at_a_known_offset():
    g, p = _vol(), _vol()
    g[5:15, 5:15, 5:15] = 1  # 1000 voxels
    p[8:18, 5:15, 5:15] = 1  # shifted by 3 voxels along x
    aff = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm^3 voxels
    row = evaluate_patient("cubes", g, p, _hot(), aff, NO_THRESHOLD)
    assert row["dice"] == pytest.approx(2 * 700 / 2000)
    assert row["tmtv_true_ml"] == pytest.approx(8.0) and row["tmtv_pred_ml"] == pytest.approx(8.0)
    assert row["tp_ml"] == pytest.approx(5.6)
    assert row["fp_ml"] == pytest.approx(2.4) and row["fn_ml"] == pytest.approx(2.4)
    assert row["hd_mm"] == pytest.approx(6.0)  # the far faces are 3 voxels x 2 mm apart
    assert row["gt_lesions"] == row["pred_lesions"] == 1
    assert row["a1_tp_lesions"] == 1 and row["a1_fp_preds"] == 0  # Dice 0.7 >= 0.5
    _same(row, reference_patient("cubes", g, p, _hot(), aff, suv_threshold=None))


def test_lesion_split_in_two_predicted_halves():
    """At a strict lesion threshold approach 1 misses a lesion predicted in two halves; approach 2 finds it."""
    g, p = _vol(), _vol()
    g[5:25, 10:20, 10:20] = 1  # 2000 voxels
    p[5:14, 10:20, 10:20] = 1  # 900 voxels
    p[16:25, 10:20, 10:20] = 1  # 900 voxels, a gap of two slices in between
    row = evaluate_patient("split", g, p, _hot(), np.eye(4), NO_THRESHOLD)
    assert row["pred_lesions"] == 2
    # each half: Dice 2*900/(2000+900) = 0.62 >= 0.5, so approach 1 also detects it ...
    assert row["a1_tp_lesions"] == 1 and row["a1_fp_preds"] == 0
    # ... with lesion threshold 0.7 only the grouped approach does: Dice(G, union) = 3600/3800 = 0.947
    strict = evaluate_patient("split", g, p, _hot(), np.eye(4), EvalSettings(suv_threshold=None, lesion_threshold=0.7))
    assert strict["a1_tp_lesions"] == 0 and strict["a1_fn_lesions"] == 1 and strict["a1_fp_preds"] == 2
    assert strict["a2_tp_lesions"] == 1 and strict["a2_fn_lesions"] == 0
    # each half against the whole lesion: 1800/2900 = 0.62 < 0.7, so both halves still count as false positives
    assert strict["a2_fp_preds"] == 2
    _same(strict, reference_patient("split", g, p, _hot(), np.eye(4), suv_threshold=None, lesion_threshold=0.7))


def test_lesions_below_the_suv_threshold_vanish():
    g, p = _vol(), _vol()
    suv = np.full(g.shape, 1.0, np.float32)
    g[2:8, 2:8, 2:8] = 1
    suv[2:8, 2:8, 2:8] = 3.0  # a faint lesion: gone after thresholding at 4
    g[20:26, 20:26, 20:26] = 1
    suv[20:26, 20:26, 20:26] = 9.0
    p[20:26, 20:26, 20:26] = 1
    p[2:8, 2:8, 2:8] = 1
    row = evaluate_patient("faint", g, p, suv, np.eye(4))
    assert row["gt_lesions"] == 1 and row["pred_lesions"] == 1 and row["dice"] == 1.0
    assert row["tmtv_true_ml"] == pytest.approx(0.216) and row["tmtv_pred_raw_ml"] == pytest.approx(0.432)
    assert row["fp_raw_ml"] == pytest.approx(0.216) and row["fp_ml"] == 0.0
    assert row["suv_max_gt"] == 9.0 and row["suv_max"] == 9.0
    # the autoPET volumes use the raw masks: nothing missed, nothing spurious
    assert row["autopet_fpv_ml"] == 0.0 and row["autopet_fnv_ml"] == 0.0
    _same(row, reference_patient("faint", g, p, suv, np.eye(4)))


def test_empty_ground_truth_and_empty_prediction():
    g, p = _vol(), _vol()
    p[3:6, 3:6, 3:6] = 1
    row = evaluate_patient("negative", g, p, _hot(), np.eye(4))
    assert row["dice"] == 0.0 and row["nsd"] == 0.0 and row["bji"] == 0.0
    assert math.isnan(row["hd_mm"]) and math.isnan(row["tmtv_abs_rel_error"]) and math.isnan(row["suv_max_gt"])
    assert math.isnan(row["recall"]) and row["precision"] == 0.0 and row["a1_fp_preds"] == 1
    assert row["autopet_fpv_ml"] == pytest.approx(0.027) and math.isnan(row["autopet_fnv_ml"])
    missed = evaluate_patient("missed", p, g, _hot(), np.eye(4))
    assert missed["dice"] == 0.0 and math.isnan(missed["precision"]) and missed["recall"] == 0.0
    assert missed["a1_fn_lesions"] == 1 and missed["autopet_fnv_ml"] == pytest.approx(0.027)
    both = evaluate_patient("empty", g, g, _hot(), np.eye(4))
    assert all(math.isnan(both[c]) for c in ("dice", "hd_mm", "nsd", "bji", "assd_mm"))
    assert both["gt_lesions"] == both["a1_fp_preds"] == 0
    for name, a, b in (("negative", g, p), ("missed", p, g), ("empty", g, g)):
        _same(evaluate_patient(name, a, b, _hot(), np.eye(4)), reference_patient(name, a, b, _hot(), np.eye(4)))


def test_flipped_axes_give_the_same_numbers():
    rng = np.random.default_rng(2)
    g = ndimage.binary_dilation(rng.random((20, 24, 28)) > 0.985, iterations=2).astype(np.uint8)
    p = ndimage.binary_dilation(rng.random((20, 24, 28)) > 0.985, iterations=2).astype(np.uint8) | g
    suv = rng.uniform(0, 12, g.shape).astype(np.float32)
    aff = np.diag([3.0, 2.0, 4.0, 1.0])
    row = evaluate_patient("a", g, p, suv, aff)
    flipped = np.array([[-3.0, 0, 0, 100], [0, 0, 2.0, 0], [0, 4.0, 0, 0], [0, 0, 0, 1]])  # x reversed, y/z swapped
    tr = lambda a: np.ascontiguousarray(a[::-1].transpose(0, 2, 1))  # noqa: E731
    flipped_row = evaluate_patient("a", tr(g), tr(p), tr(suv), flipped)
    _same(row, flipped_row, tol=1e-9)


def test_sparse_labels_match_ndimage():
    rng = np.random.default_rng(0)
    m = rng.random((15, 16, 17)) > 0.7
    for conn, rank in ((6, 1), (18, 2), (26, 3)):
        ref, n = ndimage.label(m, ndimage.generate_binary_structure(3, rank))
        lab, n2 = label_components(np.argwhere(m), m.shape, conn)
        assert n == n2 and np.array_equal(ref[m], lab)


def test_surface_corners_match_dense_neighbour_codes():
    rng = np.random.default_rng(1)
    m = (rng.random((6, 7, 8)) > 0.6).astype(np.uint8)
    kernel = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])
    padded = np.zeros(np.array(m.shape) + 1, np.uint8)
    padded[:-1, :-1, :-1] = m
    dense = ndimage.correlate(padded, kernel, mode="constant", cval=0)
    xyz, codes = surface_corners(np.argwhere(m), m.shape)
    border = (dense != 0) & (dense != 255)
    assert np.array_equal(np.argwhere(border), xyz) and np.array_equal(dense[border], codes)


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_agree_with_the_reference(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(18, 34, 3))
    g = ndimage.binary_dilation(rng.random(shape) > 0.99, iterations=int(rng.integers(1, 3))).astype(np.uint8)
    noise = ndimage.binary_dilation(rng.random(shape) > 0.993, iterations=1)
    p = (ndimage.binary_dilation(g, iterations=int(rng.integers(0, 2))) if seed % 2 else g.copy()).astype(bool)
    p = (p & (rng.random(shape) > 0.1)) | noise
    suv = ndimage.gaussian_filter(rng.uniform(0, 14, shape), 1).astype(np.float32)
    aff = np.diag([*rng.uniform(0.8, 4.5, 3), 1.0])
    settings = EvalSettings(tolerance_mm=float(rng.uniform(1, 6)), suv_threshold=[None, 4.0, 6.0][seed % 3],
                            connectivity=[6, 18, 26][seed % 3], lesion_threshold=float(rng.uniform(0.1, 0.6)))
    row = evaluate_patient("r", g, p.astype(np.uint8), suv, aff, settings)
    ref = reference_patient("r", g, p, suv, aff, **settings.describe())
    _same(row, ref)


def test_too_few_patients_get_no_fit_no_r2_and_no_limits():
    """Two patients give r² = 1 whatever the model does: below MIN_PATIENTS nothing of the kind is reported."""
    import pandas as pd

    from clips.metrics.figures import bland_altman, tmtv_scatter
    from clips.metrics.summary import MIN_PATIENTS, tmtv_agreement

    def table(n):
        t = np.linspace(10, 200, n)
        return pd.DataFrame({"tmtv_true_ml": t, "tmtv_pred_ml": t * 0.8 + np.linspace(-5, 5, n),
                             "tmtv_abs_rel_error": np.full(n, 0.2)})

    few, enough = tmtv_agreement(table(MIN_PATIENTS - 1)), tmtv_agreement(table(MIN_PATIENTS))
    assert few["r2"] is None and few["slope"] is None and few["bland_altman_loa_low_ml"] is None
    assert few["bland_altman_bias_ml"] is not None  # a mean difference is still a fact
    assert enough["r2"] > 0.9 and enough["bland_altman_loa_low_ml"] is not None
    fig = tmtv_scatter(table(2))
    assert any("too few patients" in t.get_text() for t in fig.axes[0].texts)
    assert not any(line.get_label().startswith("fit") for line in fig.axes[0].lines)
    assert any(line.get_label().startswith("fit") for line in tmtv_scatter(table(MIN_PATIENTS)).axes[0].lines)
    labels = [line.get_label() for line in bland_altman(table(3)).axes[0].lines]
    assert not any("SD" in label for label in labels)
