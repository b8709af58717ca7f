"""A generated example cohort that looks like whole-body FDG PET/CT of lymphoma, hard where real data are hard.

``clips synth --out DIR --patients N --seed S`` writes the autoPET layout (``DIR/<patient_id>/CTres.nii.gz``,
``SUV.nii.gz``, ``SEG.nii.gz``) plus ``DIR/cohort.csv``. Deterministic for a seed: patient *i* draws from its
own ``SeedSequence`` child, so adding patients never changes the first ones.

One module per part of the picture: ``anatomy`` (the normal body and FDG biodistribution), ``disease``
(lymphoma, its shapes and its hard presentations), ``mimics`` (unlabelled uptake that looks like disease),
``scanner`` (resolution and count-dependent noise), ``factors`` (the hard factors as measured rules),
``cohort`` (planning, drawing, writing), and ``phantom`` (the shapes and the grid they are drawn on). A picture
of any cohort, generated or not: ``clips.data.preview``. docs/data.md describes them.
"""
from clips.data.synth.cohort import SynthConfig, generate_patient, hard_assignment, plan_patient, write_cohort
from clips.data.synth.disease import NODAL_STATIONS, PRESENTATIONS
from clips.data.synth.factors import HARD_FACTORS
from clips.data.synth.mimics import MIMICS
from clips.data.synth.version import GENERATOR_VERSION

__all__ = ["GENERATOR_VERSION", "HARD_FACTORS", "MIMICS", "NODAL_STATIONS", "PRESENTATIONS", "SynthConfig",
           "generate_patient", "hard_assignment", "plan_patient", "write_cohort"]
