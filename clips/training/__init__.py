"""Training: the loop, checkpoints, whole-volume inference."""
