"""The confirmatory study as docs/results.md reports it is what its committed table gives today: the report is
regenerated from docs/results/confirm/per_patient.csv with the declared plan (design.json), as
`clips compare --per-patient ... --sequential true` does, and every statement and every look it prints must stand in
the docs, word for word. A change to the statistics that moves a published number fails here, not in a reader's
hands (issue #40: "re-running clips compare --per-patient on them gives the reported numbers")."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clips.stats.sequential import SequentialPlan
from clips.study.compare import compare_table

REPO = Path(__file__).resolve().parent.parent
CONFIRM = REPO / "docs" / "results" / "confirm"
SECTION = "## The confirmatory study (issue #40)"


def look_row(r) -> str:
    """One look as docs/results.md's looks table shows it."""
    return (f"| {r.contrast} | {r.subset} | {int(r.look)} | {r.estimate:+.3f} | {r.se:.3f} | {r.p_value:.2g} | "
            f"{r.boundary:.4f} | {r.conditional_power:.3f} | {r.decision} |")


def _section() -> str:
    text = (REPO / "docs" / "results.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + 1)
    return " ".join(text[start:end if end > 0 else None].split())  # wrapped lines read as one


def test_the_confirmatory_study_in_the_docs_is_what_its_committed_table_gives(tmp_path):
    design = json.loads((CONFIRM / "design.json").read_text())
    declared = design["sequential"]
    plan = SequentialPlan(max_seeds=declared["max_seeds"], min_seeds=declared["min_seeds"],
                          spending=declared["spending"], alpha=declared["alpha"], effect=declared["effect"],
                          futility_power=declared["futility_power"])
    compare_table(CONFIRM / "per_patient.csv", tmp_path, contrasts=design["primary_contrasts"], plan=plan,
                  log=lambda *_: None)
    docs = _section()
    report = (tmp_path / "comparison.md").read_text()
    statements = [line[2:] for line in report.split("## Calibration, power, difficulty")[1].splitlines()
                  if line.startswith("- ")]
    assert len(statements) >= 8  # the plan, 4 decisions, trainings, A/A, components
    missing = [s for s in statements if " ".join(s.split()) not in docs]
    assert not missing, f"docs/results.md does not say what the table gives: {missing}"
    looks = pd.read_csv(tmp_path / "looks.csv")
    assert set(looks["decision"]) <= {"efficacy", "futility", "continue"} and len(looks) >= 4
    missing = [look_row(r) for r in looks.itertuples() if look_row(r) not in docs]
    assert not missing, f"looks not in docs/results.md: {missing}"
