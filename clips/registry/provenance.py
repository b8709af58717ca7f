"""Provenance of a registered model: intended use, the weights' licence and source, the training data.

Every version that CLIPS registers carries it (``clips model import-nnunet``, ``import-tmtvnet``, ``clips promote``),
as tags on the version and on the registered model (the latest version's) and as lines of their descriptions, so
that the MLflow UI, ``clips export monai-bundle`` and a reader of the registry see what the weights may be used
for before they see a figure. What CLIPS cannot know is written "not stated", never guessed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from clips.tracking import schema

RESEARCH_ONLY = "research use only, not a medical device"
NOT_STATED = "not stated"
TAGS = {"intended_use": schema.INTENDED_USE, "licence": schema.LICENCE, "source": schema.SOURCE,
        "training_data": schema.TRAINING_DATA}


@dataclass
class Provenance:
    intended_use: str = RESEARCH_ONLY
    licence: str = NOT_STATED  # of the weights, e.g. CC-BY-SA-4.0
    source: str = NOT_STATED  # DOI or URL of the weights, or the run that trained them
    training_data: str = NOT_STATED  # as the user states it

    def tags(self) -> dict[str, str]:
        return {tag: getattr(self, field) or NOT_STATED for field, tag in TAGS.items()}

    def text(self) -> str:
        return "\n".join(f"{field.replace('_', ' ').capitalize()}: {value or NOT_STATED}"
                         for field, value in asdict(self).items())

    @classmethod
    def from_tags(cls, tags: dict) -> "Provenance | None":
        """The provenance a version's tags hold; None for a version registered before provenance existed."""
        if not any(tag in tags for tag in TAGS.values()):
            return None
        return cls(**{field: tags.get(tag, NOT_STATED) for field, tag in TAGS.items()})


def register_version(client, name: str, model_uri: str, run_id: str, provenance: Provenance,
                     description: str = "", model_id: str | None = None) -> str:
    """A new version of ``name`` (created with ``description`` when new) carrying ``provenance``; its number."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)
    text = (description + "\n\n" if description else "") + provenance.text()
    version = client.create_model_version(name, model_uri, run_id=run_id, description=text,
                                          **({"model_id": model_id} if model_id else {}))
    for key, value in provenance.tags().items():
        client.set_model_version_tag(name, version.version, key, value)
        client.set_registered_model_tag(name, key, value)
    return str(version.version)


def trained_provenance(run) -> Provenance:
    """What CLIPS knows of a model it trained: the run and its cohort; the licence is the site's to state."""
    digest = run.data.tags.get(schema.COHORT_DIGEST, "")
    return Provenance(source=f"CLIPS training run {run.info.run_id} (experiment {run.info.experiment_id})",
                      training_data=f"the training patients of that run's split ({schema.SPLIT}"
                                    + (f", cohort digest {digest}" if digest else "") + ")")
