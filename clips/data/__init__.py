"""Data: the example cohort, reading and checking NIfTI cohorts, preprocessing, splits, patches.

Nothing is re-exported here, so that importing a light module of the package (``layout``) does not import
nibabel: the command line reads its defaults from these modules when it starts."""
