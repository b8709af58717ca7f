"""The released TMTV-Net: loaded from files built from the manifest of the released state_dicts, refused
in one line when they do not fit, and the inference pipeline's pieces against values derived by hand from
shared/tmtvnet/ARCHITECTURE.md."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from clips.errors import ClipsError
from clips.models.tmtv_net import TMTVNet, load_released
from clips.models.tmtv_net.pipeline import (
    SMALL,
    blend,
    central_weighting,
    crop_centred,
    pad_centred,
    predict,
    resample_scaled,
    tile_origins,
    windows,
)

MANIFEST = Path(__file__).resolve().parent.parent.parent / "shared" / "tmtvnet" / "manifest.json"


def _manifest():
    if not MANIFEST.exists():  # shared/ beside the checkout: always there in CI (a copy is laid beside it)
        pytest.fail(f"{MANIFEST} is missing: the released TMTV-Net's manifest")
    return json.loads(MANIFEST.read_text())


def _released_like(part: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with the released file's keys, shapes and dtypes, in its order, random values."""
    g = torch.Generator().manual_seed(seed)
    return {k["key"]: (torch.randn(k["shape"], generator=g) * 0.05).to(getattr(torch, k["dtype"]))
            for k in _manifest()[part]["keys"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("released")
    torch.save(_released_like("ensemble"), d / "e_latest.model")
    torch.save(_released_like("refiner", 1), d / "r_latest.model")
    return d


def test_the_architecture_has_exactly_the_released_tensors():
    m, net = _manifest(), TMTVNet()
    for part, module in (("ensemble", net.stage1), ("refiner", net.stage2)):
        want = [(k["key"], tuple(k["shape"]), k["dtype"]) for k in m[part]["keys"]]
        got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()]
        assert got == want  # keys, shapes, dtypes and order
        assert sum(p.numel() for p in module.parameters()) == m[part]["num_parameters"]


def test_released_files_load_strictly_and_bit_for_bit(files):
    net = load_released(ensemble=files / "e_latest.model", refiner=files / "r_latest.model")
    saved = torch.load(files / "e_latest.model", weights_only=True)
    for k, v in net.stage1.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert not net.training and set(net.loaded) == {"ensemble", "refiner"} and len(net.loaded["refiner"]) == 64
    only = load_released(refiner=files / "r_latest.model")  # either file may be omitted
    assert set(only.loaded) == {"refiner"}
    assert torch.equal(only.stage1.staking_blocks.weight, torch.full((2, 4, 1, 1, 1), 0.25))  # the initialisation


def test_a_file_that_does_not_fit_is_refused_naming_the_file_and_key(files, tmp_path):
    cases = {}
    sd = _released_like("ensemble")
    del sd["base_models.2.model.backbone.middle_block.ops.ops.0.ops.0.bias"]
    cases["missing"] = (sd, "key base_models.2.model.backbone.middle_block.ops.ops.0.ops.0.bias is missing")
    sd = _released_like("ensemble")
    sd["staking_blocks.weight"] = torch.zeros(2, 3, 1, 1, 1)
    cases["shape"] = (sd, "key staking_blocks.weight has shape (2, 3, 1, 1, 1)")
    sd = _released_like("ensemble") | {"extra.weight": torch.zeros(1)}
    cases["extra"] = (sd, "key extra.weight is not in the released network")
    sd = _released_like("ensemble")
    sd["staking_blocks.bias"] = sd["staking_blocks.bias"].double()
    cases["dtype"] = (sd, "key staking_blocks.bias is torch.float64")
    cases["not a dict"] = ([torch.zeros(1)], "not a state_dict")
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.model"
        torch.save(content, path)
        with pytest.raises(ClipsError) as err:
            # the good refiner is not loaded either: both are checked first (nothing half-loaded)
            load_released(ensemble=path, refiner=files / "r_latest.model")
        assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value), name
    (tmp_path / "garbage.model").write_bytes(b"not a zip at all")
    with pytest.raises(ClipsError, match="garbage.model: not a PyTorch state_dict"):
        load_released(refiner=tmp_path / "garbage.model")
    with pytest.raises(ClipsError, match="no such file"):
        load_released(ensemble=tmp_path / "nope.model")


def test_forward_conventions(files):
    net = load_released(ensemble=files / "e_latest.model", refiner=files / "r_latest.model")
    x = torch.rand(1, 5, 32, 16, 16)
    with torch.no_grad():
        logits = net.stage1(x)
        members = [m(x) for m in net.stage1.members]
        assert logits.shape == (1, 2, 32, 16, 16) and all(m.shape == (1, 2, 32, 16, 16) for m in members)
        # the stacking layer sees each member's foreground probability, not its logits
        probs = torch.cat([torch.softmax(m, 1)[:, 1:2] for m in members], 1)
        assert torch.allclose(logits, net.stage1.staking_blocks(probs), atol=1e-6)
        assert len(net.stage1.members[0].heads(x)) == 4
        out = net.stage2(torch.rand(1, 6, 10, 9, 8))  # any size
        assert out.shape == (1, 2, 10, 9, 8)
        assert out.min() > -0.05 * out.abs().max()  # instance-normalised, then leaky-rectified
    with pytest.raises(ValueError, match="multiple of 16"):
        net.stage1(torch.rand(1, 5, 40, 16, 16))


def test_tile_weights_against_hand_values():
    w = central_weighting((128, 96, 96))
    assert w[64, 48, 48] == 1 and w[32, 24, 24] == 1 and w[95, 71, 71] == 1  # the box z 32-95, y/x 24-71
    assert w[0, 48, 48] == 0 and w[127, 48, 48] == 0 and w[0, 0, 0] == 0  # z faces: d = 32 = max
    assert w[64, 0, 48] == pytest.approx(1 - np.sqrt(24 / 32))  # 0.134 on a y face inside the z box
    assert w[10, 0, 48] == pytest.approx(1 - np.sqrt(24 / 32)) and w[5, 0, 48] == pytest.approx(1 - np.sqrt(27 / 32))
    assert w[31, 48, 48] == pytest.approx(1 - np.sqrt(1 / 32))
    assert len(np.unique(w)) == 33
    w2 = central_weighting((96, 96, 96))
    assert w2[48, 48, 48] == 1 and w2[24, 24, 24] == 1 and w2[23, 48, 48] == pytest.approx(1 - 1 / np.sqrt(24))
    assert all(np.all(f == 0) for f in (w2[0], w2[-1], w2[:, 0], w2[:, -1], w2[:, :, 0], w2[:, :, -1]))


def test_windows_padding_tiles_and_blending_by_hand():
    ct = torch.tensor([[[75.0, -600.0, 0.0, 1000.0]]])
    suv = torch.tensor([[[15.0, 6.0, 40.0, -1.0]]])
    ch = windows(ct, suv).numpy()
    assert ch[:, 0, 0, 0].tolist() == pytest.approx([0.5, 0.5, 1.0, 0.875, 1.0])  # ct 75 HU (soft: 175/200), suv 15
    assert ch[2, 0, 0, 1] == pytest.approx(0.5) and ch[3, 0, 0, 2] == pytest.approx(0.5)  # lung -600, soft 0
    assert ch[4, 0, 0, 1] == pytest.approx(0.5) and ch[1, 0, 0, 2] == 1 and ch[1, 0, 0, 3] == 0  # hot 6; clipped
    vol = torch.ones((2, 100, 90, 97))
    padded, pads = pad_centred(vol, (128, 96, 96))
    assert padded.shape == (2, 128, 96, 192) and pads == [(14, 14), (3, 3), (47, 48)]
    assert padded[0, 13, 50, 50] == 0 and padded[0, 14, 50, 50] == 1 and padded[0, 14, 50, 46] == 0
    assert torch.equal(crop_centred(padded, pads), vol)
    assert tile_origins(256, 128, 64) == [0, 64, 128] and tile_origins(96, 96, 48) == [0]
    # constant ones through the blend: 1 wherever a weight covers, 0 on the outer faces no weight covers
    out = blend(lambda t: t, torch.ones(1, 32, 32, 32), (16, 16, 16), (8, 8, 8))
    assert out.shape == (1, 32, 32, 32) and out[0, 16, 16, 16] == 1 and out[0, 10, 3, 20] == 1
    assert out[0, 0, 16, 16] == 0 and out[0, 16, 31, 16] == 0


def test_resampling_keeps_the_origin_and_rounds_the_size():
    z = torch.arange(30, dtype=torch.float32) * 4.0  # physical z in mm at 4 mm
    vol = z[:, None, None].expand(30, 5, 5).clone()
    out = resample_scaled(vol, (4.0, 4.0, 4.0), 6.0, fill=-1.0)
    assert out.shape == (20, 3, 3)  # round(30 * 4 / 6), round(5 * 4 / 6)
    assert out[:, 1, 1].tolist() == pytest.approx((np.arange(20) * 6.0).tolist()[:20], abs=1e-4)
    back = resample_scaled(out, (6.0,) * 3, (4.0,) * 3, 0.0, size=(31, 5, 5))
    assert back[:29, 2, 2].tolist() == pytest.approx((np.arange(29) * 4.0).tolist(), abs=1e-3)
    assert back[30, 2, 2] == 0  # index 30 at 4 mm = 120 mm = 6 mm index 20.0 > 19.5: outside, the fill


def test_two_stages_on_a_small_case(files):
    """The whole pipeline on small tiles (the released sizes are the defaults; 88 s a tile on 2 cores)."""
    net = load_released(ensemble=files / "e_latest.model", refiner=files / "r_latest.model")
    rng = np.random.default_rng(0)
    ct, suv = rng.normal(0, 100, (40, 30, 28)), rng.gamma(1.0, 1.0, (40, 30, 28))
    pred = predict(net, ct, suv, (4.0, 4.0, 4.0), cfg=SMALL)
    assert pred.mask.shape == (40, 30, 28) and pred.mask.dtype == np.uint8 and set(np.unique(pred.mask)) <= {0, 1}
    assert pred.stage1_6mm.shape == (27, 20, 19) and pred.stage1_probability.shape == (40, 30, 28)
    assert 0 <= pred.stage1_probability.min() and pred.stage1_probability.max() <= 1
    assert set(pred.seconds) == {"upload", "stage1", "resample", "stage2", "download"}
    again = predict(net, ct, suv, (4.0, 4.0, 4.0), cfg=SMALL)
    assert np.array_equal(pred.mask, again.mask)  # deterministic
    # Tiles through the networks 5 at a time and the refiner's input padded to 8 channels: the released outputs
    fast = predict(net, ct, suv, (4.0, 4.0, 4.0), cfg=replace(SMALL, tile_batch=5, refiner_channels=8))
    np.testing.assert_allclose(fast.stage1_6mm, pred.stage1_6mm, atol=1e-5)
    np.testing.assert_allclose(fast.stage1_probability, pred.stage1_probability, atol=1e-5)
    assert 0 < pred.mask.sum() < pred.mask.size and np.mean(fast.mask != pred.mask) < 1e-3  # both classes in it


def test_batched_tiles_equal_tiles_one_by_one():
    net = torch.nn.Conv3d(2, 3, 3, padding=1).eval()
    volume = torch.randn(2, 40, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # float32 accumulators: the float16 ones would round a convolution's last bits apart
        one = blend(net, volume, (16, 16, 16), (8, 8, 8), torch.float32)
        for batch in (2, 7, 100):  # a batch that divides the 4 x 2 x 2 tiles, one that does not, all at once
            batched = blend(net, volume, (16, 16, 16), (8, 8, 8), torch.float32, batch=batch)
            assert torch.allclose(batched, one, atol=1e-6)


def test_padded_refiner_channels_give_the_released_outputs(files):
    from clips.models.tmtv_net._refiner import with_input_channels

    refiner = load_released(refiner=files / "r_latest.model").stage2.eval()
    padded = with_input_channels(refiner, 8)
    assert padded.in_channels == 8 and refiner.in_channels == 6  # a copy: the released module is unchanged
    x6 = torch.rand(2, 6, 12, 12, 12, generator=torch.Generator().manual_seed(0))
    noise = torch.rand(2, 2, 12, 12, 12)  # whatever the added channels hold, their weights are 0
    with torch.no_grad():
        assert torch.allclose(padded(torch.cat([x6, noise], 1)), refiner(x6), atol=1e-5)
    with pytest.raises(ValueError, match="takes \\(N, 8"):
        padded(x6)
    with pytest.raises(ValueError, match="at least its 6"):
        with_input_channels(refiner, 4)


def test_import_then_predict_and_evaluate_a_case_through_mlflow(files, tmp_path):
    """clips model import-tmtvnet logs and registers the pair; clips predict runs the released pipeline (its
    real tile sizes) on a small real NIfTI case and writes the mask on the PET grid; clips evaluate scores it."""
    import mlflow
    import nibabel as nib
    from click.testing import CliRunner

    from clips.cli import cli

    out = CliRunner().invoke(cli, ["model", "import-tmtvnet", "--ensemble", str(files / "e_latest.model"),
                                   "--refiner", str(files / "r_latest.model"), "--source", "the site's copy"])
    assert out.exit_code == 0, out.output
    assert "as models:/tmtv-net-released/1" in out.output
    version = mlflow.MlflowClient().get_model_version("tmtv-net-released", "1")
    assert "SHA-256" in version.description and "Source: the site's copy" in version.description
    assert version.tags["clips.intended_use"] == "research use only, not a medical device"
    run = mlflow.get_run(version.run_id)
    assert run.data.params["tmtv_net.ensemble.file"] == "e_latest.model" and len(
        run.data.params["tmtv_net.refiner.sha256"]) == 64
    # A small case: 30 x 30 x 40 voxels of 4 x 4 x 4 mm, CT on the PET grid, a hot sphere and its SEG.
    case = tmp_path / "data" / "P001"
    case.mkdir(parents=True)
    affine = np.diag([-4.0, -4.0, 4.0, 1.0])
    grid = np.indices((30, 30, 40)).astype(float)
    sphere = ((grid - np.array([15, 15, 20])[:, None, None, None]) ** 2).sum(0) < 16
    suv = 1.0 + 9.0 * sphere
    body = ((grid[:2] - 15) ** 2).sum(0) < 144
    ct = np.where(sphere, 40.0, np.where(body, 0.0, -1000.0))
    for name, data in (("SUV", suv), ("CTres", ct), ("SEG", sphere.astype(np.uint8))):
        nib.save(nib.Nifti1Image(data.astype(np.float32 if name != "SEG" else np.uint8), affine),
                 str(case / f"{name}.nii.gz"))
    # The cohort folder, as clips evaluate --model-uri predicts it (the same predict_path; evaluate's --model-uri
    # path itself is tested with a CLIPS model in test_training_e2e): one pass of the released tiles, not two.
    res = CliRunner().invoke(cli, ["predict", "--model-uri", "models:/tmtv-net-released/1", "--input",
                                   str(tmp_path / "data"), "--out", str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    mask = nib.load(str(tmp_path / "pred" / "P001.nii.gz"))
    assert mask.shape == (30, 30, 40) and np.allclose(mask.affine, affine)  # on the PET grid
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    assert "TMTV (predicted mask)" in (tmp_path / "pred" / "P001_report.txt").read_text()
    # the imported model as a teacher (transfer_teacher, difficulty=teacher_loss) or an init_weights source
    from clips.training.checkpoint import load_network

    teacher = load_network("models:/tmtv-net-released/1")
    assert type(teacher).__name__ == "ReleasedStage1" and not teacher.training
    assert torch.equal(teacher.stage1.staking_blocks.weight,
                       torch.load(files / "e_latest.model", weights_only=True)["staking_blocks.weight"])
    with torch.no_grad():
        assert teacher(torch.rand(1, 5, 20, 18, 24)).shape == (1, 2, 20, 18, 24)  # any size, CLIPS's axis order
    ev = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tmp_path / "data"), "--pred-dir",
                                  str(tmp_path / "pred"), "--out", str(tmp_path / "eval")])
    assert ev.exit_code == 0, ev.output
    assert "1 patient(s) evaluated, 0 error(s)" in ev.output


def test_fine_tuning_starts_from_the_released_weights_and_trains_only_what_it_was_told(files, tiny_cohort):
    """A real training (finetune_cpu profile, a curriculum) from the released file through MLflow, told to train
    U-Net 1 only: U-Net 1 changes; the other three and the stacking layer end bit-identical to the released file."""
    import mlflow

    from clips.config import build_config
    from clips.training.trainer import train

    cfg = build_config({"profile": "finetune_cpu", "data_dir": str(tiny_cohort), "finetune": "members:1",
                        "init_weights": str(files / "e_latest.model"), "curriculum": "predefined",
                        "steps_per_epoch": "1", "epochs": "1", "lr": "0.01", "threads": "2"})
    result = train(cfg, log=lambda *_: None)
    tuned = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model").stage1.state_dict()
    released = torch.load(files / "e_latest.model", weights_only=True)
    changed = {k for k in released if not torch.equal(tuned[k], released[k])}
    assert changed and all(k.startswith("base_models.1.") for k in changed)  # stacking and U-Nets 0, 2, 3 frozen
    assert "base_models.1.model.backbone.middle_block.ops.ops.0.ops.0.weight" in changed
    from clips.models.tmtv_net.finetune import parse_trainable

    assert parse_trainable("stacking") == (True, ()) and parse_trainable("all") == (True, (0, 1, 2, 3))
    run = mlflow.get_run(result.run_id)
    assert run.data.params["cfg.model"] == "tmtv_net_released" and run.data.params["cfg.finetune"] == "members:1"
    assert "test_dice_mean" in run.data.metrics  # evaluated on whole volumes like any CLIPS model


def test_refiner_fine_tuning_trains_the_refiner_fed_by_the_frozen_ensemble(files, tiny_cohort):
    """finetune=refiner (stage 2): a real training from both released files changes the refiner and leaves the whole
    ensemble bit-identical; the sixth channel is stage 1's foreground probability, resampled through 6 mm."""
    import mlflow
    import nibabel as nib

    from clips.config import build_config
    from clips.models.tmtv_net.cascade import ReleasedCascade
    from clips.training.trainer import train

    for f in tiny_cohort.glob("*/*.nii.gz"):  # a 30 cm slab of each body: every evaluation pass runs stage 1 at 6 mm
        nib.save(nib.load(str(f)).slicer[:, :, 35:65], str(f))
    both = f"{files / 'e_latest.model'},{files / 'r_latest.model'}"
    cfg = build_config({"profile": "finetune_cpu", "data_dir": str(tiny_cohort), "finetune": "refiner",
                        "init_weights": both, "curriculum": "none", "spacing_mm": "12", "patch_size": "16",
                        "steps_per_epoch": "2", "epochs": "1", "lr": "0.01", "threads": "2"})
    result = train(cfg, log=lambda *_: None)
    tuned = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
    assert isinstance(tuned, ReleasedCascade) and tuned.spacing_mm == (12.0, 12.0, 12.0)
    ensemble = torch.load(files / "e_latest.model", weights_only=True)
    assert all(torch.equal(tuned.stage1.stage1.state_dict()[k], v) for k, v in ensemble.items())
    refiner = torch.load(files / "r_latest.model", weights_only=True)
    changed = {k for k, v in refiner.items() if not torch.equal(tuned.refiner.state_dict()[k], v)}
    assert "model.ops.0.ops.0.ops.0.weight" in changed  # the 9^3 input convolution, which sees the sixth channel
    assert "test_dice_mean" in mlflow.get_run(result.run_id).data.metrics
    from clips.tracking import schema
    from clips.training.checkpoint import load_network  # its checkpoint as a teacher: rebuilt as the cascade it is

    last = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path=f"{schema.CHECKPOINTS}/last.pt")
    assert isinstance(load_network(last), ReleasedCascade)
    # The sixth channel: on a 6 mm grid nothing is resampled, so it is the ensemble's own foreground softmax.
    at_6mm = ReleasedCascade((6.0, 6.0, 6.0))
    at_6mm.load_released(both)
    x = torch.rand(1, 5, 16, 16, 32)
    with torch.no_grad():
        direct = torch.softmax(at_6mm.stage1(x), dim=1)[:, 1:2]
        assert torch.allclose(at_6mm.stage1_probability(x), direct, atol=1e-6)
        assert at_6mm(x).shape == (1, 2, 16, 16, 32)
    with pytest.raises(ClipsError, match="needs both released files"):
        at_6mm.load_released(str(files / "e_latest.model"))


def _scipy_resample(volume, spacing, target, fill, size=None):
    """The pipeline's resampling as it was written first, with SciPy's map_coordinates on a coordinate mesh (the
    torch one must equal it): linear, neighbours clamped inside [-0.5, n - 0.5), ``fill`` outside."""
    from scipy import ndimage

    spacing = np.asarray(spacing, float)
    target = np.broadcast_to(np.asarray(target, float), spacing.shape)
    n = np.asarray(volume.shape)
    size = tuple(int(round(v)) for v in n * spacing / target) if size is None else tuple(size)
    axes = [np.arange(s) * t / sp for s, t, sp in zip(size, target, spacing)]
    inside = [(a >= -0.5) & (a < m - 0.5) for a, m in zip(axes, n)]
    coords = np.meshgrid(*[np.clip(a, 0, m - 1) for a, m in zip(axes, n)], indexing="ij")
    out = ndimage.map_coordinates(volume.astype(np.float32), coords, order=1, mode="nearest")
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    return np.where(mask, out, np.float32(fill)).astype(np.float32)


def _sitk_resample(volume, spacing_zyx, target_zyx, size_zyx, fill):
    """SimpleITK's linear resampling as the official code calls it: same origin and direction, a new spacing and
    size, a fill value (arrays in SimpleITK's (z, y, x) order, its spacings in (x, y, z))."""
    sitk = pytest.importorskip("SimpleITK")  # nnU-Net's dependency: the test extra, and so CI, has it
    img = sitk.GetImageFromArray(volume.astype(np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    f = sitk.ResampleImageFilter()
    f.SetInterpolator(sitk.sitkLinear)
    f.SetOutputSpacing(tuple(float(s) for s in target_zyx[::-1]))
    f.SetSize([int(s) for s in size_zyx[::-1]])
    f.SetOutputOrigin(img.GetOrigin())
    f.SetOutputDirection(img.GetDirection())
    f.SetDefaultPixelValue(float(fill))
    return sitk.GetArrayFromImage(f.Execute(img))


@pytest.mark.parametrize("shape,spacing", [((96, 80, 80), (3.0, 2.04, 2.04)), ((60, 48, 48), (4.0, 4.0, 4.0)),
                                           ((71, 53, 67), (3.27, 3.65, 3.65))])
def test_resampling_equals_simpleitks_both_ways(shape, spacing):
    """The pipeline's two resamplings (native -> 6 mm with the CT fill; the 6 mm probability back onto the native
    grid with fill 0) against SimpleITK's, which the official code uses, on autoPET-like, coarse and odd grids."""
    rng = np.random.default_rng(0)
    ct = rng.normal(0, 300, shape).astype(np.float32)
    size6 = tuple(int(round(n * s / 6.0)) for n, s in zip(shape, spacing))
    ours = resample_scaled(torch.from_numpy(ct), spacing, 6.0, -1024.0).numpy()
    assert ours.shape == size6
    np.testing.assert_allclose(ours, _sitk_resample(ct, spacing, (6.0,) * 3, size6, -1024.0), atol=2e-3)
    # the torch resampling equals SciPy's map_coordinates, which the pipeline used first, to 1e-5 of the range
    first = _scipy_resample(ct, spacing, 6.0, -1024.0)
    np.testing.assert_allclose(ours, first, rtol=1e-5, atol=1e-5 * np.abs(first).max())
    prob6 = rng.random(size6).astype(np.float32)
    back = resample_scaled(torch.from_numpy(prob6), (6.0,) * 3, spacing, 0.0, size=shape).numpy()
    np.testing.assert_allclose(back, _sitk_resample(prob6, (6.0,) * 3, spacing, shape, 0.0), atol=1e-5)
    np.testing.assert_allclose(back, _scipy_resample(prob6, (6.0,) * 3, spacing, 0.0, size=shape), atol=1e-5)
