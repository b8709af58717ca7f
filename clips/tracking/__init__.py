"""MLflow tracking: what runs hold and how they are written and read.

schema.py (every tag, parameter and artifact name, in one place), runs.py (starting, ending and finding runs),
tables.py and evaluation.py (per-patient tables and figures), model.py (logging CLIPS's networks), summary.py,
privacy.py (pseudonymised ids), resilient.py (logging that survives a server outage), reap.py (runs of dead
processes), server.py, accounts.py and certificates.py (the shared tracking server).

Nothing is imported here, so that the command line can read ``schema`` without importing MLflow.
"""
