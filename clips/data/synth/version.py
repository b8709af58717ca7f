"""The generator's version, part of the example cohort's folder name: bump it when the drawn images change, so
a cohort from an older generator is never reused (v2: mimics, shaped lesions, scanner model, measured factors)."""
GENERATOR_VERSION = "v2"
