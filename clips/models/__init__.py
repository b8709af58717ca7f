"""Segmentation networks."""
from clips.models.unet import MIN_PATCH, PATCH_MULTIPLE, PRESETS, SegNet, build_model

__all__ = ["MIN_PATCH", "PATCH_MULTIPLE", "PRESETS", "SegNet", "build_model"]
