"""Which of the cohort's images goes into which input channel of an nnU-Net model, stated, never guessed.

A CLIPS cohort holds a CT in HU and a PET in SUV on one grid. An nnU-Net model names its channels in
dataset.json (``{"0": "CT", "1": "PET"}``) and normalises each as plans.json says. The mapping is, per channel,
``CT`` or ``SUV``:

- ``--channels CT=0,SUV=1`` says it outright (every channel of the model once);
- ``--channels CT=0,PET=1`` says channel 1 takes PET in the unit the model was trained on. The cohort's PET is
  SUV; SUV and Bq/ml differ by one factor per patient (weight / injected dose), which a per-image z-score
  (nnU-Net's ``ZScoreNormalization``) removes, so for such a channel SUV is the same input and is fed, and the
  import says so. For a channel normalised with fixed statistics (``CTNormalization``: clipped and scaled with the
  training set's intensities) the unit matters, and CLIPS refuses: it does not turn SUV back into Bq/ml without
  each patient's weight and dose. If that model was trained on SUV (autoPET's images are), ``SUV=1`` says so.
- without ``--channels``, the names decide when they can: ``CT`` is CT, a name with PET, SUV or FDG is PET (as
  above); two channels named ``CT`` (nnU-Net's autoPET datasets and CLIPS's own export name both so, to get the
  fixed normalisation) or a name the cohort has no image for is one line asking for ``--channels``.
"""
from __future__ import annotations

from clips.errors import ClipsError

CT, SUV, PET = "CT", "SUV", "PET"
SCALE_FREE = ("ZScoreNormalization",)  # nnU-Net normalisations that a per-patient factor does not change
PET_NAMES = ("PET", "SUV", "FDG")


def parse(text: str) -> dict[int, str]:
    """``"CT=0,SUV=1"`` -> {0: "CT", 1: "SUV"}; "" -> {}."""
    out: dict[int, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, index = part.partition("=")
        key = key.strip().upper()
        if key not in (CT, SUV, PET) or not index.strip().isdigit():
            raise ClipsError(f"--channels {text!r}: {part!r} is not CT=<k>, SUV=<k> or PET=<k>")
        if int(index) in out:
            raise ClipsError(f"--channels {text!r}: channel {index} named twice")
        out[int(index)] = key
    return out


def resolve(folder, given: dict[int, str]) -> tuple[list[str], list[str]]:
    """(the cohort image of each model channel, CT or SUV, in channel order; the notes to state), or one line."""
    names, norms = folder.channel_names, folder.normalisation
    where = folder.path / "dataset.json"
    shown = ", ".join(f"{k} {v!r}" for k, v in sorted(names.items()))
    if given:
        if sorted(given) != sorted(names):
            raise ClipsError(f"--channels names channels {sorted(given)}; {where} has {len(names)}: {shown}")
        asked = dict(given)
    else:
        asked = {}
        for k, name in names.items():
            upper = name.upper()
            if upper == CT:
                asked[k] = CT
            elif any(p in upper for p in PET_NAMES):
                asked[k] = PET
            else:
                raise ClipsError(f"{where}: channel {k} {name!r} is neither CT nor PET; the cohort has no such "
                                 f"image (channels: {shown}); say the mapping with --channels CT=<k>,SUV=<k>")
        if list(asked.values()).count(CT) > 1 or list(asked.values()).count(PET) > 1:
            raise ClipsError(f"{where}: channels {shown}: the names do not say which is the CT and which the PET; "
                             "say it with --channels, e.g. CT=0,SUV=1")
    if list(asked.values()).count(CT) > 1 or list(asked.values()).count(SUV) + list(asked.values()).count(PET) > 1:
        raise ClipsError(f"--channels: each of CT and PET once (asked: {asked})")
    images, notes = [], []
    for k in sorted(asked):
        if asked[k] != PET:
            images.append(asked[k])
            continue
        norm = norms[k] if k < len(norms) else "?"
        if norm not in SCALE_FREE:
            raise ClipsError(f"{folder.path / 'plans.json'}: channel {k} ({names[k]!r}) is normalised with {norm}, "
                             "fixed statistics, so its unit matters; the cohort's PET is SUV and CLIPS does not "
                             "convert it to Bq/ml without each patient's weight and dose; if the model was trained "
                             f"on SUV say --channels ...,SUV={k}")
        images.append(SUV)
        notes.append(f"channel {k} ({names[k]!r}) takes PET; it is z-scored per image ({norm}), so SUV and Bq/ml "
                     "give it the same input: the cohort's SUV is fed")
    return images, notes
