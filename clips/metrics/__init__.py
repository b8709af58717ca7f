"""Per-patient metrics."""
from clips.metrics.overlap import dice, volume_ml

__all__ = ["dice", "volume_ml"]
