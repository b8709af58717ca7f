"""Segmentation networks."""
from clips.models.unet import PRESETS, SegNet, build_model

__all__ = ["PRESETS", "SegNet", "build_model"]
