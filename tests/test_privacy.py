import os
import stat

import pandas as pd
import pytest

from clips.errors import ConfigError
from clips.tracking.privacy import Privacy


def test_auto_mode_follows_the_tracking_uri(isolated_home):
    assert not Privacy("auto", "sqlite:///x.db").active
    assert Privacy("auto", "http://tracking:5000").active
    assert Privacy("pseudonymize", "sqlite:///x.db").active
    assert not Privacy("real", "https://tracking").active
    with pytest.raises(ConfigError, match="privacy must be one of"):
        Privacy("maybe")


def test_pseudonyms_are_keyed_stable_and_local(isolated_home):
    a, b = Privacy("pseudonymize"), Privacy("pseudonymize")
    assert a.id("PETCT_0042") == b.id("PETCT_0042") != a.id("PETCT_0043")
    assert a.id("PETCT_0042").startswith("P") and "0042" not in a.id("PETCT_0042")
    key = isolated_home / "pseudonym.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and len(key.read_bytes()) == 32
    key.write_bytes(b"\0" * 32)  # another site, another key: other pseudonyms
    assert Privacy("pseudonymize").id("PETCT_0042") != a.id("PETCT_0042")
    df = pd.DataFrame({"patient_id": ["PETCT_0042"], "subject": ["PETCT_0042"], "dice": [0.5]})
    out = a.table(df)
    assert out["patient_id"][0] == out["subject"][0] == a.id("PETCT_0042") and out["dice"][0] == 0.5
    assert a.text("PETCT_0042: SEG.nii.gz: shape") == f"{a.id('PETCT_0042')}: SEG.nii.gz: shape"
    a.save_mapping(isolated_home / "run")
    assert "PETCT_0042" in (isolated_home / "run" / "pseudonyms.csv").read_text()
