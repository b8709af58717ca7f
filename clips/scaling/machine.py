"""The training parameters that describe the machine a training runs on, not its recipe: a joining worker may set
them for itself (scaling/workers.py), and a training resumed on another machine may differ in them, nowhere else
(training/checkpoint.py, and the parameter check on resume)."""
MACHINE_KEYS = ("data_dir", "device", "threads", "workers")
