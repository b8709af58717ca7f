"""Where CLIPS finds and keeps things: a leaf module (standard library only), so that infrastructure
(tracking, scaling) finds ``$CLIPS_HOME`` without importing the training configuration, the curricula or torch.
nnU-Net v2's ``paths.py`` is the model."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = Path(os.environ.get("CLIPS_EXPERIMENTS", REPO_ROOT / "experiments"))
DEFAULT_PROFILE = "smoke"  # the profile of experiments/profiles.yaml a run takes when it names none


def clips_home() -> Path:
    """Where generated cohorts, caches and local checkpoints live (``$CLIPS_HOME``, default ``~/.cache/clips``)."""
    return Path(os.environ.get("CLIPS_HOME", Path.home() / ".cache" / "clips"))
