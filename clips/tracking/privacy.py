"""Pseudonymised patient ids for everything that reaches a shared tracking server.

``privacy=auto`` (default): pseudonyms when the tracking URI is a server (http/https),
real ids for a local store. ``pseudonymize`` and ``real`` force either. A pseudonym is
``P`` + the first 12 hex digits of HMAC-SHA-256(key, patient id), with a 32-byte key
made once and kept in ``$CLIPS_HOME/pseudonym.key`` (mode 600): stable across runs on
this site, meaningless without the key. The mapping of a run is written next to its
local checkpoints, never logged.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

import mlflow
import pandas as pd

from clips.errors import ConfigError
from clips.paths import clips_home
from clips.tracking.schema import PRIVACY_MODES as MODES

ID_COLUMNS = ("patient_id", "subject")
PATH_PARAMS = ("data_dir",)  # parameters that hold a cohort's folder


def _key() -> bytes:
    path = clips_home() / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


class Privacy:
    def __init__(self, mode: str = "auto", tracking_uri: str | None = None):
        if mode not in MODES:
            raise ConfigError(f"privacy must be one of {', '.join(MODES)}, not {mode!r}")
        uri = tracking_uri or mlflow.get_tracking_uri()
        self.active = mode == "pseudonymize" or (mode == "auto" and uri.startswith(("http://", "https://")))
        self._key = _key() if self.active else b""
        self.mapping: dict[str, str] = {}

    def id(self, patient_id: str) -> str:
        if not self.active:
            return patient_id
        if patient_id not in self.mapping:
            self.mapping[patient_id] = f"P{self._digest(str(patient_id))}"
        return self.mapping[patient_id]

    def ids(self, ids) -> list[str]:
        return [self.id(i) for i in ids]

    def path(self, path) -> str:
        """A cohort folder as a shared server may see it: a keyed hash of its absolute path
        (stable on this site, meaningless elsewhere; folder names often hold patient or trial names), or the path
        itself when ids are real."""
        if not self.active:
            return str(path)
        # path-shaped: MLflow resolves a dataset source as a path
        return f"/site-local/{self._digest(str(Path(path).expanduser().resolve()))}"

    def _digest(self, text: str) -> str:
        """The first 12 hex digits of HMAC-SHA-256(site key, text): one rule for ids and paths."""
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:12]

    def params(self, params: dict) -> dict:
        """Run parameters with every cohort path (``data_dir``, ``train.data_dir``, ...) through :meth:`path`."""
        return {k: (self.path(v) if v and k.rsplit(".", 1)[-1] in PATH_PARAMS else v) for k, v in params.items()}

    def table(self, df: pd.DataFrame) -> pd.DataFrame:
        if not self.active:
            return df
        out = df.copy()
        for col in ID_COLUMNS:
            if col in out:
                out[col] = [self.id(v) for v in out[col].astype(str)]
        return out

    def text(self, s: str) -> str:
        """Replace every known patient id in a message (errors name patients)."""
        if not self.active or not self.mapping:
            return s
        pattern = re.compile("|".join(re.escape(k) for k in sorted(self.mapping, key=len, reverse=True)))
        return pattern.sub(lambda m: self.mapping[m.group(0)], s)

    def save_mapping(self, folder: Path) -> None:
        if self.active and self.mapping:
            folder.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"patient_id": list(self.mapping), "pseudonym": list(self.mapping.values())}).to_csv(
                folder / "pseudonyms.csv", index=False)
