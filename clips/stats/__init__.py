"""Statistics, in one place, for every caller (studies, tuning's re-evaluation, promotion):

- run_aware.py: the run-aware test of two training procedures in cross-validation (a mixed model of runs and
  patients, Satterthwaite degrees of freedom, a sign-flip randomisation), its power and the A/A check;
- sequential.py: the group-sequential design over seed rounds (spending functions, boundaries, looks,
  conditional power, the bias-adjusted estimate after a stop);
- paired.py: per-patient bootstrap intervals, Holm's adjustment, Spearman intervals, and the paired Wilcoxon
  test of two *fixed* models that promotion makes.
"""
