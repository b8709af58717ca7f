"""docs/reproduce-autopet.md, run as written on a miniature release: the select step, the check, the study."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clips.data.layout import discover
from clips.tracking import schema

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "reproduce-autopet.md"
pytestmark = pytest.mark.slow

# What the test changes in the guide's commands, and only this: the size of the miniature and of the study
# (the guide's is a GPU study of days; here 2 folds, 1 seed, a tiny network), everything else as written.
SMALLER = {
    "--patients 12": "--patients 7 --spacing 10",
    "--folds 5 --seeds 3 --contrasts progressive_patch:none": "--folds 2 --seeds 1 --exploratory true",
    "-P profile=gpu": "-P model=tiny -P epochs=1 -P steps_per_epoch=2 -P patch_size=32 -P spacing_mm=10",
}


def guide_commands() -> tuple[dict[str, str], list[str]]:
    """The guide's variables and its clips commands, in order, from its tested block."""
    block = GUIDE.read_text().split("<!-- guide:begin -->")[1].split("<!-- guide:end -->")[0]
    variables, commands = {}, []
    for line in block.splitlines():
        line = line.split("  #")[0].strip()
        if "=" in line.split(" ")[0] and not line.startswith("clips"):
            name, value = line.split("=", 1)
            variables[name] = value.split()[0]
        elif line.startswith("clips "):
            commands.append(line)
    return variables, commands


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "clips", *shlex.split(command)[1:]], cwd=cwd, capture_output=True,
                         text=True, timeout=900, env=dict(os.environ))
    assert res.returncode == 0, f"{command}\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    return res


def test_the_guide_runs_from_download_to_study(tmp_path):
    variables, commands = guide_commands()
    assert set(variables) == {"RELEASE", "COHORT"} and [c.split()[1] for c in commands] == [
        "synth", "data", "data", "study"]
    release, cohort = tmp_path / "FDG-PET-CT-Lesions", tmp_path / "autopet-lymphoma"
    for command in commands:
        for old, new in SMALLER.items():
            command = command.replace(old, new)
        run(command.replace("$RELEASE", str(release)).replace("$COHORT", str(cohort)), tmp_path)

    # select took exactly the lymphoma studies, plus negatives, as links, and said why
    meta = pd.read_csv(release / "fdg_metadata.csv")
    meta["study"] = meta["File Location"].str.split("/").str[3]
    per_study = meta.drop_duplicates(["Subject ID", "study"])
    chosen = pd.read_csv(cohort / "selection.csv")
    lymphoma = per_study[per_study["diagnosis"] == "LYMPHOMA"]
    assert set(zip(chosen.loc[chosen["diagnosis"] == "LYMPHOMA", "patient"],
                   chosen.loc[chosen["diagnosis"] == "LYMPHOMA", "study"])) == set(
        zip(lymphoma["Subject ID"], lymphoma["study"]))
    assert set(chosen["diagnosis"]) == {"LYMPHOMA", "NEGATIVE"}
    assert all((cohort / p / s).is_symlink() for p, s in zip(chosen["patient"], chosen["study"]))
    # a patient's studies share one subject, and no fold's split puts a subject on two sides
    cases = discover(cohort)
    two = chosen["patient"].value_counts()
    assert (two > 1).any(), "the miniature has a patient with two selected studies"
    assert len({c.subject for c in cases if c.subject == two.index[0]}) == 1
    client = mlflow.MlflowClient()
    children = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                if r.data.tags.get(schema.ROLE) == schema.STUDY_CHILD]
    assert len(children) == 4  # 2 arms x 2 folds x 1 seed
    for run_ in children:
        split = pd.read_csv(client.download_artifacts(run_.info.run_id, schema.SPLIT, str(tmp_path)))
        sides = split.assign(side=split["split"].where(split["split"] == "test", "train")).groupby("subject")["side"]
        assert (sides.nunique() == 1).all(), split
    assert (tmp_path / "report_autopet" / "report.html").is_file()


def test_select_names_what_is_wrong_in_one_line(tmp_path):
    release = tmp_path / "release"
    run(f"clips synth --layout autopet-release --out {release} --patients 3 --spacing 10", tmp_path)
    meta = pd.read_csv(release / "fdg_metadata.csv")
    bad = tmp_path / "no_diagnosis.csv"
    meta.drop(columns=["diagnosis"]).to_csv(bad, index=False)
    good = release / "fdg_metadata.csv"
    for metadata, where, said in ((bad, "diagnosis=LYMPHOMA", "no column 'diagnosis'"),
                                  (good, "diagnosis=LYMPHOMAS", "no study has diagnosis=LYMPHOMAS")):
        res = subprocess.run([sys.executable, "-m", "clips", "data", "select", str(release), "--metadata",
                              str(metadata), "--where", where, "--out", str(tmp_path / "sel")], cwd=REPO,
                             capture_output=True, text=True)
        assert res.returncode == 2 and said in res.stderr and str(metadata) in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
