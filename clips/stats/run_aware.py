"""Run-aware inference for a contrast between two training procedures (docs/study.md, "The unit problem").

In K-fold cross-validation every test patient of a fold is scored by the same trained network, so the luck of
one training run moves all of that fold's patients at once. The patient-level Wilcoxon test treats the
patients as independent and calls that luck an effect (about 47 % false positives on A/A comparisons at
alpha = 0.05 in a simulation matched to the cv30 study). Here the training run is a random factor:

    d(i, s) = m_A(i, s) - m_B(i, s) = fold + (1 | patient) + (1 | training run) + residual,

for patient i of fold f and seed s (the runs of A and B with the same fold and seed form one *run pair*).
Within each fold the differences form a patients x seeds table; a two-way ANOVA of each table, pooled over
folds, gives the mean squares of patients, seeds (runs) and the residual; their expectations give the variance
components, and the variance of the estimate (the mean over patients and seeds) is a linear combination of the
mean squares with Satterthwaite's degrees of freedom. For a balanced design this is the closed form
SE^2 = (MS_P + MS_S - MS_E) / (N S), equal to a REML fit of the crossed model (tests/test_inference.py).

Unbalanced data (a failed run, a patient missing from one run) are reduced, per fold, to the balanced core:
seeds missing for most of the fold's patients are dropped, then patients missing any remaining seed; what was
dropped is said in ``note``. Folds may then differ in patients and seeds: the expectations of the pooled mean
squares carry the per-fold counts, which keeps the estimate unbiased (exact for equal counts).

The companion test is the exact sign-flip randomisation over the run pairs: under the null hypothesis that
the two procedures are exchangeable, A and B may swap in every (fold, seed) pair, which flips the sign of that
pair's differences for all its patients at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

MIN_SEEDS = 3  # per fold for a primary contrast: fewer leaves too few degrees of freedom for the run effect
MAX_EXACT_UNITS = 18  # 2^18 sign patterns enumerated; more run pairs: a Monte Carlo sample of patterns
N_RANDOM = 50_000


@dataclass(frozen=True)
class Components:
    """Variance components of the paired differences (SDs, in the measure's unit) with their mean squares."""

    run_sd: float  # the training run's effect, shared by every test patient of the run's fold
    patient_sd: float  # patient x arm: how differently the two arms treat a patient, over all runs
    residual_sd: float  # patient x run
    ms: dict = field(default_factory=dict)  # mean squares: patient, run, residual
    df: dict = field(default_factory=dict)  # their degrees of freedom

    def as_row(self, prefix: str = "") -> dict:
        return {f"{prefix}run_sd": self.run_sd, f"{prefix}patient_sd": self.patient_sd,
                f"{prefix}residual_sd": self.residual_sd, f"{prefix}df_run": self.df.get("run", 0),
                f"{prefix}df_patient": self.df.get("patient", 0), f"{prefix}df_residual": self.df.get("residual", 0)}


@dataclass(frozen=True)
class Design:
    """Patients and seeds per fold, after reduction to the balanced core."""

    patients: tuple[int, ...]
    seeds: tuple[int, ...]

    @property
    def runs(self) -> int:
        return int(sum(self.seeds))

    @property
    def n_patients(self) -> int:
        return int(sum(self.patients))

    def describe(self) -> str:
        s = sorted(set(self.seeds))
        seeds = f"{s[0]}" if len(s) == 1 else f"{s[0]}-{s[-1]}"
        return f"{len(self.patients)} fold(s) x {seeds} seed(s), {self.n_patients} patients"


@dataclass(frozen=True)
class RunAwareResult:
    estimate: float  # mean of d over patients and seeds
    se: float
    df: float  # Satterthwaite
    ci_low: float
    ci_high: float
    p_value: float  # two-sided t test of the crossed random-effects model
    p_randomisation: float  # sign flips of whole run pairs
    design: Design
    components: Components | None
    note: str = ""
    null: np.ndarray | None = None  # the sign-flip null distribution of the estimate (for the figure)

    @property
    def testable(self) -> bool:
        return np.isfinite(self.p_value)


# ----------------------------------------------------------------------------- data
def pair_runs(a: pd.DataFrame, b: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per patient, fold and seed: d = a - b over the (fold, seed) run pairs both arms have.
    Both tables have patient_id, fold (-1: one split) and seed."""
    keys = ["patient_id", "fold", "seed"]
    left = a[keys + [column]].dropna().groupby(keys, as_index=False)[column].mean()
    right = b[keys + [column]].dropna().groupby(keys, as_index=False)[column].mean()
    both = left.merge(right, on=keys, suffixes=("_a", "_b"))
    return both.assign(d=both[f"{column}_a"] - both[f"{column}_b"])[keys + ["d"]]


def balanced_core(d: pd.DataFrame) -> tuple[list[np.ndarray], str]:
    """Per fold, the patients x seeds table of differences with no hole, and a note of what was dropped."""
    tables, dropped = [], []
    every_seed = sorted(d["seed"].unique())
    for fold, rows in d.groupby("fold", sort=True):
        grid = rows.pivot_table(index="patient_id", columns="seed", values="d", aggfunc="mean")
        grid = grid.reindex(columns=every_seed)  # a run pair one arm lacks is a column of holes
        keep_seeds = grid.columns[grid.notna().mean() > 0.5]
        for s in grid.columns.difference(keep_seeds):
            dropped.append(f"fold {fold} seed {s} (a failed run, or most of its patients without a value)")
        grid = grid[keep_seeds]
        missing = grid.index[grid.isna().any(axis=1)]
        if len(missing):
            dropped.append(f"fold {fold}: {len(missing)} patient(s) missing from some run ({', '.join(missing[:3])}"
                           + (", ..." if len(missing) > 3 else "") + ")")
        grid = grid.dropna()
        if grid.size:
            tables.append(grid.to_numpy(float))
    note = ("reduced to the balanced core: dropped " + "; ".join(dropped)) if dropped else ""
    return tables, note


# ----------------------------------------------------------------------------- the model
def _mean_squares(tables: list[np.ndarray]) -> tuple[dict, dict]:
    ss = {"patient": 0.0, "run": 0.0, "residual": 0.0}
    df = {"patient": 0, "run": 0, "residual": 0}
    for t in tables:
        n, s = t.shape
        m, rows, cols = t.mean(), t.mean(1, keepdims=True), t.mean(0, keepdims=True)
        ss["patient"] += s * float(((rows - m) ** 2).sum())
        ss["run"] += n * float(((cols - m) ** 2).sum())
        ss["residual"] += float(((t - rows - cols + m) ** 2).sum())
        df["patient"] += n - 1
        df["run"] += s - 1
        df["residual"] += (n - 1) * (s - 1)
    ms = {k: (ss[k] / df[k] if df[k] else float("nan")) for k in ss}
    return ms, df


def _variance_of_estimate(design: Design, var: dict) -> float:
    """Var(mean over patients and seeds) for variance components ``var`` (patient, run, residual)."""
    n, s = np.array(design.patients, float), np.array(design.seeds, float)
    w = n * s / (n * s).sum()
    return float((w ** 2 * (var["patient"] / n + var["run"] / s + var["residual"] / (n * s))).sum())


def _coefficients(design: Design) -> tuple[dict, float, float]:
    """Var(estimate) = sum_j c_j E[MS_j]: the coefficients c, and the multipliers k_P, k_S of
    E[MS_P] = s2_e + k_P s2_p and E[MS_S] = s2_e + k_S s2_r (per-fold counts pooled by degrees of freedom)."""
    n, s = np.array(design.patients, float), np.array(design.seeds, float)
    w = n * s / (n * s).sum()
    a_p, a_r, a_e = (w ** 2 / n).sum(), (w ** 2 / s).sum(), (w ** 2 / (n * s)).sum()
    k_p = ((n - 1) * s).sum() / (n - 1).sum() if (n - 1).sum() else float("nan")
    k_s = ((s - 1) * n).sum() / (s - 1).sum() if (s - 1).sum() else float("nan")
    return {"patient": a_p / k_p, "run": a_r / k_s, "residual": a_e - a_p / k_p - a_r / k_s}, k_p, k_s


def components_of(tables: list[np.ndarray], design: Design) -> tuple[Components, float, float]:
    """(variance components, Var(estimate), Satterthwaite df) by the method of moments; a component whose
    estimate is negative is set to zero and its mean square leaves the combination."""
    ms, df = _mean_squares(tables)
    coef, k_p, k_s = _coefficients(design)
    s2e = ms["residual"]
    s2p = max(0.0, (ms["patient"] - s2e) / k_p)
    s2r = max(0.0, (ms["run"] - s2e) / k_s)
    comps = Components(float(np.sqrt(s2r)), float(np.sqrt(s2p)), float(np.sqrt(s2e)), ms, df)
    terms = {"residual": coef["residual"]}
    if s2p > 0:
        terms["patient"] = coef["patient"]
    else:
        terms["residual"] += coef["patient"]  # s2_p = 0: MS_P's share is carried by MS_E
    if s2r > 0:
        terms["run"] = coef["run"]
    else:
        terms["residual"] += coef["run"]
    variance = sum(c * ms[k] for k, c in terms.items())
    denom = sum((c * ms[k]) ** 2 / df[k] for k, c in terms.items() if df[k])
    dof = variance ** 2 / denom if denom > 0 else float("nan")
    return comps, float(max(variance, 0.0)), float(dof)


# ----------------------------------------------------------------------------- the tests
def sign_flip(tables: list[np.ndarray], seed: int = 0) -> tuple[float, np.ndarray]:
    """(two-sided p, null distribution of the estimate): every run pair's differences flipped together.
    Exact (all 2^U patterns) up to MAX_EXACT_UNITS run pairs, else N_RANDOM random patterns (p counts the
    observed pattern, so it is never 0)."""
    sums = np.concatenate([t.sum(0) for t in tables])  # one sum per run pair (column of a fold's table)
    total = sum(t.size for t in tables)
    observed = abs(sums.sum() / total)
    u = len(sums)
    if u <= MAX_EXACT_UNITS:
        signs = 1 - 2 * ((np.arange(2 ** u)[:, None] >> np.arange(u)) & 1)
        null = signs @ sums / total
        p = float(np.mean(np.abs(null) >= observed - 1e-12))
    else:
        rng = np.random.default_rng(seed)
        null = rng.choice([-1.0, 1.0], size=(N_RANDOM, u)) @ sums / total
        p = float((1 + np.sum(np.abs(null) >= observed - 1e-12)) / (N_RANDOM + 1))
    return p, null


def run_aware_test(d: pd.DataFrame, level: float = 0.95, seed: int = 0, randomisation: bool = True
                   ) -> RunAwareResult:
    """The primary test of a contrast from its per-patient, per-run differences (``pair_runs``); without
    ``randomisation`` the sign-flip companion is left out (NaN; a sequential study's many looks need only the t
    test)."""
    tables, note = balanced_core(d)
    return tables_test(tables, note, level, seed, randomisation)


def tables_test(tables: list[np.ndarray], note: str = "", level: float = 0.95, seed: int = 0,
                randomisation: bool = True) -> RunAwareResult:
    """:func:`run_aware_test` on the per-fold patients x seeds tables of differences (``balanced_core``)."""
    design = Design(tuple(t.shape[0] for t in tables), tuple(t.shape[1] for t in tables))
    if not tables:
        return RunAwareResult(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan"),
                              float("nan"), design, None, "no run pair in common")
    estimate = float(sum(t.sum() for t in tables) / sum(t.size for t in tables))
    p_rand, null = sign_flip(tables, seed) if randomisation else (float("nan"), None)
    if max(design.seeds) < 2 or min(design.patients) < 2:
        why = ("one seed per fold: a training run's luck cannot be told from an effect, so there is no run-aware "
               "test (give every arm at least 3 seeds)") if max(design.seeds) < 2 else "fewer than 2 patients a fold"
        return RunAwareResult(estimate, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"),
                              p_rand, design, None, "; ".join(x for x in (note, why) if x), null)
    comps, variance, dof = components_of(tables, design)
    se = float(np.sqrt(variance))
    if not (se > 0 and np.isfinite(dof)):
        return RunAwareResult(estimate, se, dof, estimate, estimate, float("nan"), p_rand, design, comps,
                              "; ".join(x for x in (note, "no variation: no test") if x), null)
    t_crit = stats.t.ppf(0.5 + level / 2, dof)
    p = float(2 * stats.t.sf(abs(estimate) / se, dof))
    return RunAwareResult(estimate, se, dof, estimate - t_crit * se, estimate + t_crit * se, p, p_rand, design,
                          comps, note, null)


# ----------------------------------------------------------------------------- planning
def expected_df(design: Design, comps: Components) -> tuple[float, float]:
    """(SE, Satterthwaite df) that a design would have with these variance components (expected mean squares)."""
    coef, k_p, k_s = _coefficients(design)
    s2 = {"patient": comps.patient_sd ** 2, "run": comps.run_sd ** 2, "residual": comps.residual_sd ** 2}
    n, s = np.array(design.patients), np.array(design.seeds)
    df = {"patient": int((n - 1).sum()), "run": int((s - 1).sum()), "residual": int(((n - 1) * (s - 1)).sum())}
    ems = {"patient": s2["residual"] + k_p * s2["patient"], "run": s2["residual"] + k_s * s2["run"],
           "residual": s2["residual"]}
    variance = _variance_of_estimate(design, s2)
    denom = sum((coef[k] * ems[k]) ** 2 / df[k] for k in coef if df[k])
    return float(np.sqrt(variance)), float(variance ** 2 / denom) if denom > 0 else float("nan")


def power(delta: float, design: Design, comps: Components, alpha: float = 0.05) -> float:
    """Power of the two-sided run-aware t test at level ``alpha`` for a true mean difference ``delta``
    (noncentral t with the design's expected Satterthwaite df)."""
    se, dof = expected_df(design, comps)
    if not (se > 0 and np.isfinite(dof)):
        return float("nan")
    t_crit = stats.t.ppf(1 - alpha / 2, dof)
    nc = abs(delta) / se
    if nc > t_crit + 30:  # far in the tail, where scipy's noncentral t returns NaN: certain detection
        return 1.0
    wrong_side = stats.nct.cdf(-t_crit, dof, nc)  # negligible; scipy returns NaN for it far in the tail
    return float(stats.nct.sf(t_crit, dof, nc) + (0.0 if np.isnan(wrong_side) else wrong_side))


def min_detectable(design: Design, comps: Components, alpha: float = 0.05, target: float = 0.8) -> float:
    """Smallest true mean difference detected with ``target`` power."""
    se, dof = expected_df(design, comps)
    if not (se > 0 and np.isfinite(dof)):
        return float("nan")
    hi = se * 40
    if power(hi, design, comps, alpha) < target:
        return float("nan")
    return float(optimize.brentq(lambda x: power(x, design, comps, alpha) - target, 0.0, hi, xtol=1e-6))


def seeds_needed(delta: float, patients: tuple[int, ...], comps: Components, alpha: float = 0.05,
                 target: float = 0.8, most: int = 200) -> int | None:
    """Seeds per fold (the same for both arms) for ``target`` power at ``delta``; None: more than ``most``
    (the patients' own spread alone keeps the design from it: more patients are needed, not seeds)."""
    for s in range(2, most + 1):
        if power(delta, Design(patients, (s,) * len(patients)), comps, alpha) >= target:
            return s
    return None


def aa_sides(table: pd.DataFrame, per_side: int) -> tuple[pd.DataFrame, pd.DataFrame, str] | None:
    """An A/A contrast from one arm's runs: (side A, side B, how), each side ``per_side`` seeds relabelled
    0..per_side-1 so that they pair by position, or None when the arm has fewer than 2 seeds."""
    seeds = sorted(table["seed"].unique())
    if len(seeds) >= 2 * per_side >= 2:
        k, how = per_side, f"seeds {_ints(seeds[per_side:2 * per_side])} against {_ints(seeds[:per_side])}"
    elif len(seeds) >= 2:
        k = len(seeds) // 2
        how = (f"the baseline's seeds in halves, {_ints(seeds[k:2 * k])} against {_ints(seeds[:k])} ({k} per side "
               f"where the contrasts have {per_side})")
    else:
        return None
    rank = {s: i for i, s in enumerate(seeds)}
    t = table.assign(seed=table["seed"].map(rank))
    side_b = t[t["seed"] < k]
    side_a = t[(t["seed"] >= k) & (t["seed"] < 2 * k)].assign(seed=lambda x: x["seed"] - k)
    return side_a, side_b, how



def arm_components(table: pd.DataFrame, column: str) -> Components | None:
    """Variance components of one arm's own values (its run SD: how much one training's luck moves the
    fold's patients together), from the same patients x seeds ANOVA."""
    d = table[["patient_id", "fold", "seed", column]].dropna().rename(columns={column: "d"})
    tables, _ = balanced_core(d)
    tables = [t for t in tables if t.shape[0] > 1 and t.shape[1] > 1]
    if not tables:
        return None
    return components_of(tables, Design(tuple(t.shape[0] for t in tables), tuple(t.shape[1] for t in tables)))[0]


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values)
