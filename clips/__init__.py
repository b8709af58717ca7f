"""CLIPS: Curriculum Learning for Improved PET Segmentation."""

__version__ = "0.1.0"
