"""Disk checks made before long work starts, so a full disk or a read-only folder costs nothing."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from clips.errors import ClipsError

DEFAULT_MIN_FREE_MB = 500.0  # caches, checkpoints and reports of a run on the example cohort take far less


def ensure_writable(folder: str | Path, what: str, min_free_mb: float | None = None) -> Path:
    """Create ``folder`` if needed, prove it can be written, and check its free space ($CLIPS_MIN_FREE_MB)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".clips-write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ClipsError(f"cannot write to {folder} ({what}): {exc.strerror or exc}") from None
    need = min_free_mb if min_free_mb is not None else float(os.environ.get("CLIPS_MIN_FREE_MB", DEFAULT_MIN_FREE_MB))
    free = shutil.disk_usage(folder).free / 2**20
    if free < need:
        raise ClipsError(f"only {free:.0f} MB free in {folder} ({what}); at least {need:.0f} MB are needed "
                         "(set CLIPS_MIN_FREE_MB to change the limit)")
    return folder
