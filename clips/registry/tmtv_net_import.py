"""``clips model import-tmtvnet``: the released TMTV-Net's two files as one MLflow model, registered.

The files are checked against the released architecture first (clips/models/tmtv_net/loading.py), then
logged as the artifacts of a model "from code" (no pickled classes), with their SHA-256 digests as run
parameters and in the model's metadata, a description on the run and on the model version, and registered
under ``tmtv-net-released`` by default. From then on ``clips predict --model-uri models:/tmtv-net-released/1``
(and ``clips evaluate``) run the released two-stage pipeline.
"""
from __future__ import annotations

from pathlib import Path

import mlflow

from clips.errors import ClipsError
from clips.models import RELEASED_PRESET
from clips.models.tmtv_net import loading
from clips.models.tmtv_net.pipeline import RELEASED
from clips.registry.provenance import Provenance, register_version
from clips.tracking import schema

MODEL_NAME = "tmtv-net-released"
KIND = RELEASED_PRESET  # the model's metadata["clips"]["kind"]: how clips predict runs it
CODE = Path(loading.__file__).with_name("mlflow_model.py")
DESCRIPTION = ("The released TMTV-Net (Yousefirizi et al., 2024): a stage-1 ensemble of four 3D U-Nets with a "
               "learned stacking layer at 6 mm, and a stage-2 refiner on the native PET grid; imported unchanged "
               "by clips model import-tmtvnet and run with the released inference pipeline (docs/tmtv_net.md).")


def import_released(ensemble: str | None, refiner: str | None, register: str = MODEL_NAME,
                    provenance: Provenance | None = None, log=print) -> dict:
    if not ensemble and not refiner:
        raise ClipsError("give --ensemble (e_latest.model), --refiner (r_latest.model), or both")
    files = {k: Path(v) for k, v in (("ensemble", ensemble), ("refiner", refiner)) if v}
    net = loading.load_released(**files)  # refuses a file that does not fit, in one line, before logging anything
    digests = dict(net.loaded)
    meta = {"kind": KIND, "files": {k: p.name for k, p in files.items()}, "sha256": digests,
            "stage1_spacing_mm": RELEASED.stage1_spacing_mm, "stage1_tile": list(RELEASED.stage1_tile),
            "stage2_tile": list(RELEASED.stage2_tile), "stages": 2 if "refiner" in files else 1}
    with mlflow.start_run(run_name="tmtv-net-released · import") as run:
        mlflow.set_tags({schema.ROLE: schema.MODEL_IMPORT, "mlflow.note.content": DESCRIPTION + "\n\n"
                         + (provenance or Provenance()).text()})
        mlflow.log_params({f"tmtv_net.{k}.sha256": v for k, v in digests.items()}
                          | {f"tmtv_net.{k}.file": p.name for k, p in files.items()})
        info = mlflow.pyfunc.log_model(name="model", python_model=str(CODE),
                                       artifacts={k: str(p) for k, p in files.items()},
                                       pip_requirements=_requirements(), metadata={"clips": meta})
        version = register_version(mlflow.MlflowClient(), register, info.model_uri, run.info.run_id,
                                   provenance or Provenance(), DESCRIPTION + " SHA-256: "
                                   + ", ".join(f"{k} {v}" for k, v in digests.items()),
                                   model_id=info.model_id) if register else None
    uri = f"models:/{register}/{version}" if version else info.model_uri
    log(f"imported the released TMTV-Net ({', '.join(f'{k} {p.name}' for k, p in files.items())}) as {uri} "
        f"(run {run.info.run_id})")
    return {"run_id": run.info.run_id, "model_uri": uri, "sha256": digests}


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "numpy", "scipy")] + ["clips"]
