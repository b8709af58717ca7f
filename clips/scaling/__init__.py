"""Running studies and tuning on several processes, GPUs and machines.

``storage`` opens the Optuna relational storage (SQLite beside the MLflow store by default, PostgreSQL to share)
with heartbeats; ``queue`` keeps a study's jobs there as enqueued trials (atomic claims, dead workers detected,
retries); ``devices`` gives each local worker its GPU and its share of the CPU cores; ``workers`` starts them;
``preemption`` makes a worker leave cleanly on SIGTERM/SIGUSR1 or before its deadline; ``machine`` names the
parameters that belong to the machine rather than the recipe.
docs/scaling.md shows the set-ups.
"""
