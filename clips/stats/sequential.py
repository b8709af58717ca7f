"""Group-sequential studies: look after every seed round, stop when the evidence is in, and still hold alpha.

A fixed design pays for the worst case; looking at the p-values after every seed round and stopping at the first
small one (optional stopping) inflates the false-positive rate far above alpha (tests/test_sequential.py shows it).
The clinical trials' answer (Jennison & Turnbull, *Group Sequential Methods with Applications to Clinical Trials*,
2000) is a plan made before the first look:

* **Looks**: after every whole seed round (every arm, every fold, one seed) from ``min_seeds`` to ``max_seeds``.
* **Spending** (Lan & DeMets 1983): the two-sided alpha of a contrast is spent over the looks by the information
  reached, taken as the planned fraction of seeds, t = seeds / max_seeds. The seed fraction, not the
  variance-based information, because it is fixed before any result is seen, so the boundaries cannot move with
  the data; the run effect, which dominates a study's noise, shrinks with the seeds. The patients' own spread does
  not (every look has the same patients), so the information reached early is more than t, the looks are more
  correlated than the boundaries assume, and the boundaries are conservative (the tests' simulation measures the
  rate). ``obf``: O'Brien-Fleming-type, alpha(t) / 2 = 2 - 2 Phi(z_{alpha/4} / sqrt t) on each side (gsDesign's
  and ldbounds' two-sided form), almost nothing early; ``pocock``: alpha ln(1 + (e - 1) t), evenly. The nominal
  boundaries come from the canonical joint distribution of the looks (:func:`z_boundaries`).
* **Small samples**: the run-aware t test has 2-10 Satterthwaite df at the early looks, where a normal boundary on
  its t statistic is anti-conservative. The boundaries are applied on the **p-value scale**: a look crosses when
  the t test's two-sided p is at most the nominal p of the normal boundary, 2 (1 - Phi(c_k)), so each look keeps
  its own level whatever its df (the simulation checks the overall rate).
* **Several contrasts**: Bonferroni, each of the m declared primary contrasts gets alpha / m and its own spending
  (Holm is not valid across sequential looks without more machinery).
* **Futility**, non-binding (the efficacy boundaries ignore it): the conditional power of reaching the final
  boundary if the planned ``effect`` were true, under the current estimate of the variance components, with the
  variance-based information t_v = Var(estimate at max_seeds) / Var(estimate now); below ``futility_power`` the
  contrast stops for futility. At ``max_seeds`` a contrast that has not crossed stops for futility: the decision
  is never ``continue`` there.
* **The estimate at stopping**: a study stopped early for efficacy overestimates its effect. Beside the naive
  estimate comes the median-unbiased estimate under the stagewise ordering, with the confidence interval from the
  same ordering (Jennison & Turnbull ch. 8), computed on the canonical process by Monte Carlo with common random
  numbers (:func:`stopped_estimate`).

Decisions per contrast and look: ``continue``, ``efficacy`` (crossed, the variant better), ``harm`` (crossed, the
variant worse) or ``futility``. A contrast that stopped is frozen; an arm all of whose contrasts stopped is
withdrawn by the study (clips/study/runner.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

from clips.stats.run_aware import Components, Design, _variance_of_estimate

SPENDINGS = ("obf", "pocock")
GRID = 401  # points of the numerical integration between the boundaries
N_PATHS = 20_000  # Monte Carlo paths of the estimate at stopping


@dataclass(frozen=True)
class SequentialPlan:
    """The plan of a sequential study, declared before the first look (clips study --sequential)."""

    max_seeds: int  # S: the most seeds per fold; at S every contrast has a final decision
    min_seeds: int = 3  # the first look (the run-aware test needs a few seeds per fold)
    spending: str = "obf"  # obf | pocock
    alpha: float = 0.05  # two-sided, for the whole family of primary contrasts (Bonferroni over them)
    effect: float = 0.10  # the planned effect (Dice) for the futility rule's conditional power
    futility_power: float = 0.2  # conditional power below this stops a contrast for futility; 0: no futility

    def __post_init__(self):
        from clips.errors import ConfigError

        if self.spending not in SPENDINGS:
            raise ConfigError(f"spending {self.spending!r}: one of {', '.join(SPENDINGS)}")
        if not 2 <= self.min_seeds <= self.max_seeds:
            raise ConfigError(f"sequential looks need 2 <= min_seeds ({self.min_seeds}) <= max_seeds "
                              f"({self.max_seeds})")
        if not 0 < self.alpha < 1 or not 0 <= self.futility_power < 1 or self.effect <= 0:
            raise ConfigError("sequential: 0 < alpha < 1, 0 <= futility_power < 1 and effect > 0")

    @property
    def looks(self) -> list[int]:
        """The seeds per fold at each look."""
        return list(range(self.min_seeds, self.max_seeds + 1))

    def fractions(self) -> list[float]:
        return [k / self.max_seeds for k in self.looks]

    def z_boundaries(self, contrasts: int = 1) -> list[float]:
        return list(z_boundaries(tuple(self.fractions()), self.alpha / max(1, contrasts), self.spending))

    def p_boundaries(self, contrasts: int = 1) -> dict[int, float]:
        """Seeds -> the nominal two-sided p a look's t test must reach to cross."""
        return {k: float(2 * stats.norm.sf(c)) for k, c in zip(self.looks, self.z_boundaries(contrasts))}

    def describe(self, contrasts: int = 1) -> str:
        bounds = ", ".join(f"{k}: {p:.4f}" for k, p in self.p_boundaries(contrasts).items())
        return (f"group-sequential: looks after seeds {self.min_seeds}-{self.max_seeds}, {self.spending} spending of "
                f"alpha {self.alpha:g} (Bonferroni over {contrasts} primary contrast(s)), nominal p boundaries "
                f"{{{bounds}}}, futility below {self.futility_power:g} conditional power at +{self.effect:g}")


# ----------------------------------------------------------------------------- boundaries
def spent(t: float, alpha: float, spending: str) -> float:
    """Lan-DeMets spending: the two-sided alpha spent by information fraction ``t``."""
    t = min(max(t, 0.0), 1.0)
    if t <= 0:
        return 0.0
    if spending == "obf":  # per side with alpha / 2 (as gsDesign's and ldbounds' two-sided symmetric designs)
        side = alpha / 2
        return float(2 * (2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - side / 2) / np.sqrt(t))))
    return float(alpha * np.log(1 + (np.e - 1) * t))


@lru_cache(maxsize=256)  # a study looks often at one plan; the integration takes tens of milliseconds
def z_boundaries(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    """Two-sided symmetric z boundaries c_k at information ``fractions``: P(first |Z_k| >= c_k at look k) is the
    spending increment, under the canonical joint distribution (Z_k = B(t_k) / sqrt(t_k), B a Brownian motion),
    by numerical integration of the continuation density (Armitage, McPherson & Rowe 1969)."""
    bounds: list[float] = []
    grid, dens, prev_t, prev_spent = None, None, 0.0, 0.0
    for t in fractions:
        target = spent(t, alpha, spending) - prev_spent
        sd = np.sqrt(t - prev_t)

        def crossing(c, grid=grid, dens=dens, t=t, sd=sd):
            a = c * np.sqrt(t)
            if grid is None:
                return float(2 * stats.norm.sf(c))
            stay = stats.norm.cdf((a - grid) / sd) - stats.norm.cdf((-a - grid) / sd)
            return float(np.trapezoid(dens * (1 - stay), grid))

        if target <= 1e-12:
            c = 40.0
        else:
            c = float(optimize.brentq(lambda x, want=target: crossing(x) - want, 1e-6, 40.0, xtol=1e-10))
        bounds.append(c)
        a = c * np.sqrt(t)
        new_grid = np.linspace(-a, a, GRID)
        if grid is None:
            new_dens = stats.norm.pdf(new_grid, scale=np.sqrt(t))
        else:
            kernel = stats.norm.pdf((new_grid[:, None] - grid[None, :]) / sd) / sd
            new_dens = np.trapezoid(kernel * dens[None, :], grid, axis=1)
        grid, dens, prev_t = new_grid, new_dens, t
        prev_spent += crossing(c) if target > 1e-12 else 0.0
    return tuple(bounds)


# ----------------------------------------------------------------------------- one look
@dataclass(frozen=True)
class Look:
    seeds: int  # seeds per fold at this look
    estimate: float
    se: float
    p_value: float
    boundary: float  # the nominal p this look must reach
    conditional_power: float
    decision: str


def conditional_power(estimate: float, se: float, seeds: int, plan: SequentialPlan, patients: tuple[int, ...],
                      comps: Components | None, z_final: float) -> float:
    """P(the final look crosses | the data so far, the planned effect true), on the B-value scale with the
    variance-based information t_v = Var(final) / Var(now) under the current variance components."""
    if seeds >= plan.max_seeds or comps is None or not (se > 0):
        return float("nan")
    s2 = {"patient": comps.patient_sd ** 2, "run": comps.run_sd ** 2, "residual": comps.residual_sd ** 2}
    v_final = _variance_of_estimate(Design(patients, (plan.max_seeds,) * len(patients)), s2)
    t = min(v_final / se ** 2, 0.999) if v_final > 0 else 0.999
    b = estimate / se * np.sqrt(t)
    drift = plan.effect / np.sqrt(v_final) if v_final > 0 else np.inf
    return float(stats.norm.sf((z_final - b - drift * (1 - t)) / np.sqrt(1 - t)))


def decide(estimate: float, se: float, p: float, seeds: int, plan: SequentialPlan, patients: tuple[int, ...],
           comps: Components | None, contrasts: int = 1) -> Look:
    """The decision at one look from the run-aware test's estimate, SE and p (a look before ``min_seeds``, or
    without a test, continues)."""
    bounds = plan.p_boundaries(contrasts)
    boundary = bounds.get(seeds, float("nan"))
    z_final = plan.z_boundaries(contrasts)[-1]
    cp = conditional_power(estimate, se, seeds, plan, patients, comps, z_final)
    if seeds >= plan.min_seeds and se == 0 and estimate == 0:  # every difference exactly 0: it cannot cross
        decision, cp = "futility", 0.0
    elif seeds < plan.min_seeds or not np.isfinite(p):
        decision = "futility" if seeds >= plan.max_seeds else "continue"
    elif p <= boundary:
        decision = "efficacy" if estimate > 0 else "harm"
    elif seeds >= plan.max_seeds or (plan.futility_power > 0 and np.isfinite(cp) and cp < plan.futility_power):
        decision = "futility"
    else:
        decision = "continue"
    return Look(seeds, estimate, se, p, boundary, cp, decision)


# ----------------------------------------------------------------------------- the estimate at stopping
@lru_cache(maxsize=16)
def _paths(fractions: tuple[float, ...], n: int = N_PATHS, seed: int = 0) -> np.ndarray:
    """Standard Brownian motion at ``fractions`` (n x K): the common random numbers of every drift."""
    rng = np.random.default_rng(seed)
    steps = np.diff(np.concatenate([[0.0], fractions]))
    return np.cumsum(rng.standard_normal((n, len(fractions))) * np.sqrt(steps), axis=1)


def stopped_estimate(z_observed: float, look: int, se_observed: float, plan: SequentialPlan,
                     contrasts: int = 1, level: float = 0.95, paths: int = N_PATHS) -> tuple[float, float, float]:
    """(median-unbiased estimate, CI low, CI high) in the measure's unit for a study that stopped at look index
    ``look`` (0-based) with z = estimate / SE there: the stagewise ordering (a path that crossed upward at an
    earlier look is more extreme; at the same look, a larger z is), on the canonical process with drift eta (the
    final look's expected z); the non-binding futility rule is left out of the ordering, as usual."""
    t = np.asarray(plan.fractions())
    c = np.asarray(plan.z_boundaries(contrasts))
    w = _paths(tuple(t), paths)
    k = len(t) if look >= len(t) else look + 1
    se_final = se_observed * np.sqrt(t[min(look, len(t) - 1)])

    def p_more_extreme(eta: float) -> float:
        z = (w + eta * t) / np.sqrt(t)
        z = z[:, :k]
        crossed = np.abs(z[:, :-1]) >= c[:k - 1]
        first = np.where(crossed.any(1), crossed.argmax(1), k) if k > 1 else np.full(len(z), k)
        up_before = (first < k - 1) & (z[np.arange(len(z)), np.minimum(first, k - 1)] > 0)
        reach = first >= k - 1
        return float(np.mean(up_before | (reach & (z[:, k - 1] >= z_observed))))

    def solve(q: float) -> float:
        lo, hi = -40.0, 40.0
        return float(optimize.brentq(lambda e: p_more_extreme(e) - q, lo, hi, xtol=1e-3))

    eta = solve(0.5)
    tail = (1 - level) / 2
    return eta * se_final, solve(tail) * se_final, solve(1 - tail) * se_final


# ----------------------------------------------------------------------------- a contrast's looks
def analyse(tables: list[np.ndarray], plan: SequentialPlan, contrasts: int = 1) -> list[Look]:
    """Every look from ``min_seeds`` to the seeds the tables hold (per fold, patients x seeds in seed order), each
    analysed on its first seeds alone, with the t test only (a look's decision needs no sign flips)."""
    from clips.stats.run_aware import tables_test

    held = min((t.shape[1] for t in tables), default=0)
    looks = []
    for k in plan.looks:
        if k > held:
            break
        r = tables_test([t[:, :k] for t in tables], randomisation=False)
        looks.append(decide(r.estimate, r.se, r.p_value, k, plan, r.design.patients, r.components, contrasts))
    return looks


def first_stop(looks: list[Look]) -> int | None:
    """The index of the first look whose decision is not ``continue`` (where a study would have stopped)."""
    return next((i for i, look in enumerate(looks) if look.decision != "continue"), None)
