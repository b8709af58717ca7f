"""Per-patient metrics (docs/metrics.md). Nothing is re-exported: see the note in ``clips/data``."""
