"""The exported bundle's docs/README.md: what the model is, where its figures come from, how to run it."""
from __future__ import annotations

from clips.tracking import schema


def _table(d: dict) -> str:
    if not d:
        return "(none recorded)\n"
    return "| | |\n|---|---|\n" + "".join(f"| `{k}` | {v} |\n" for k, v in sorted(d.items()))


def render(model_uri: str, meta: dict, description: str, metrics: dict, evidence: dict, provenance) -> str:
    params = evidence.get("params", {})
    shown = ("data", "curriculum", "profile", "epochs", "seed")  # the training parameters the README shows
    data = {k: v for k, v in params.items() if k.startswith(tuple(schema.CFG + s for s in shown) + ("data.",))}
    return f"""# CLIPS lymphoma lesion segmentation: MONAI bundle

Exported by `clips export monai-bundle` from `{model_uri}`.

{provenance.text().replace(chr(10), "  " + chr(10))}

## The model
{description}

Preprocessing (`configs/inference.json`, all MONAI transforms): CT (HU) and PET (SUV, on the same grid) are made
into the five TMTV-Net channels, each clipped to its window and scaled to [0, 1]; reoriented to RAS; resampled to
{meta['spacing_mm']} mm (`Spacingd`); rounded to float16 as CLIPS's case cache holds them. Inference: sliding
windows of {meta['patch_size']} voxels, overlap {meta.get('sw_overlap', 0.25)}, Gaussian blending. Post-processing:
softmax, back to the patient's grid (`Invertd`), lesion where the lesion probability is >= 0.5.

## Its training data and figures, as the tracking server holds them
Identifiers are as the run logged them (pseudonymised by default; no patient data is in this bundle).

Training (run `{evidence.get('run', '')}`):

{_table(data)}
Mean figures of the run (validation and test patients of its split):

{_table(metrics)}
Registry evidence (promotion's paired test against the previous champion):

{_table({k: v for k, v in evidence.items() if k not in ('run', 'params')})}
## Running it
Needs `monai` with `fire` and `pytorch-ignite` (MONAI's bundle command line and evaluator; `pip install
'clips[bundle]'` or `pip install "monai[fire,ignite]"`), nothing else; offline. Cases in the autoPET layout,
`<dataset_dir>/<case>/CTres.nii.gz` with `SUV.nii.gz` beside it:

```bash
python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\
    --config_file configs/inference.json
python -m monai.bundle run --config_file configs/inference.json --bundle_root . --dataset_dir /path/to/cases
```

A bundle's configs are code (MONAI evaluates their `$` expressions and `_target_` names as Python): run a
bundle only from a source you trust, as MONAI's own warning says.

Masks are written to `eval/<case>/CTres_seg.nii.gz` (uint8, the PET grid). `--output_dir` moves them;
`--device "$torch.device('cpu')"` forces the CPU.

Against `clips predict` with the same model: the same mask to the voxel where the cases' spacing is the model's;
at another spacing boundary voxels can differ, because MONAI's `Spacingd` samples from the first voxel's centre
at exactly {meta['spacing_mm']} mm while CLIPS resamples keeping the corners of the field of view.

## MONAI Label and 3D Slicer
MONAI Label feeds a bundle one image per case (the key `image`), and this model needs two (CT and SUV). Two ways,
neither tried here:

1. **A stacked volume.** Write each case as one 4D NIfTI, CT then SUV on the last axis, and replace the bundle's
   first two transforms by `LoadImaged(keys="image")`, `EnsureChannelFirstd(keys="image")` and
   `SplitDimd(keys="image", output_postfixes=["ct", "pet"])`, renaming `ct` and `pet` in the transforms that
   follow to `image_ct` and `image_pet`.
2. **A custom loader.** In your own MONAI Label app, an infer task whose pre-transforms take the CT path MONAI
   Label gives and load `SUV.nii.gz` from beside it, then run this bundle's transforms from `CopyItemsd` on.

Then: `monailabel apps --download --name monaibundle --output apps`, copy this folder to
`apps/monaibundle/model/clips_pet_ct`, and `monailabel start_server --app apps/monaibundle --studies DIR --conf
models clips_pet_ct`. In 3D Slicer install the MONAILabel extension (Extensions Manager), open the MONAI Label
module, enter the server's address, choose the model `clips_pet_ct`, load a study and press *Run* under
Auto-segmentation; the mask appears as a segment over the volume, to be corrected with Slicer's Segment Editor.

## Files
```
configs/metadata.json   what the network takes and gives, versions, the run's mean figures
configs/inference.json  network_def, preprocessing, inferer, postprocessing, evaluator
models/model.pt         state_dict of monai.networks.nets.DynUNet
```
"""
