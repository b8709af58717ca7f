"""Segmentation networks."""
from clips.models.tmtv_net.finetune import PRESET as RELEASED_PRESET  # the released TMTV-Net's one name
from clips.models.unet import MIN_PATCH, PATCH_MULTIPLE, PRESETS, SegNet, build_model


def build_network(model: str, finetune: str = "stacking", spacing_mm=(6.0, 6.0, 6.0)):
    """The network a training trains: a CLIPS U-Net preset, or the released TMTV-Net to fine-tune (its stage-1
    ensemble, or with finetune=refiner its refiner fed by the frozen ensemble, at the run's ``spacing_mm``)."""
    if model == RELEASED_PRESET:
        from clips.models.tmtv_net.finetune import ReleasedStage1, is_refiner

        if is_refiner(finetune):
            from clips.models.tmtv_net.cascade import ReleasedCascade

            return ReleasedCascade(spacing_mm)
        return ReleasedStage1(finetune)
    return SegNet(model)


__all__ = ["MIN_PATCH", "PATCH_MULTIPLE", "PRESETS", "RELEASED_PRESET", "SegNet", "build_model", "build_network"]
