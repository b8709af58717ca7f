"""Exports of CLIPS models to the formats of other tools (a MONAI bundle)."""
