"""Disk checks made before long work starts, so a full disk, a read-only folder or a secret others can read costs
nothing."""
from __future__ import annotations

import os
import shutil
import stat
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


def require_owner_only(path: str | Path, what: str) -> None:
    """Refuse a secret (password, key) file that anyone but its owner may read, naming it and the fix."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise ClipsError(f"cannot read the {what} from {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ClipsError(f"the {what} file {path} is readable by others (mode {mode:04o}): chmod 600 {path}")
