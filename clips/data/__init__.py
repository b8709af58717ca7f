"""Data: the example cohort, reading and checking NIfTI cohorts, preprocessing, splits, patches."""
from clips.data.io import PatientVolumes, load_patient, read_patient
from clips.data.layout import PatientFiles, discover

__all__ = ["PatientFiles", "PatientVolumes", "discover", "load_patient", "read_patient"]
