"""Segmentation networks."""
from clips.models.unet import MIN_PATCH, PATCH_MULTIPLE, PRESETS, SegNet, build_model

RELEASED_PRESET = "tmtv_net_released"  # the released TMTV-Net's stage-1 ensemble (clips/models/tmtv_net/finetune.py)


def build_network(model: str, finetune: str = "stacking"):
    """The network a training trains: a CLIPS U-Net preset, or the released TMTV-Net ensemble to fine-tune."""
    if model == RELEASED_PRESET:
        from clips.models.tmtv_net.finetune import ReleasedStage1

        return ReleasedStage1(finetune)
    return SegNet(model)


__all__ = ["MIN_PATCH", "PATCH_MULTIPLE", "PRESETS", "RELEASED_PRESET", "SegNet", "build_model", "build_network"]
