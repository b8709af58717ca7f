"""The model registry: promotion by evidence."""
