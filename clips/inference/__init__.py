"""Inference: a network over whole volumes (``sliding_window``) and ``clips predict`` with a logged or registered
model (``predict``)."""
