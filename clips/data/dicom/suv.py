"""PET to SUV (body weight), or the exact reason it cannot be done. Nothing is guessed.

SUV = activity concentration (Bq/ml) x body weight (g) / injected activity (Bq), the injected activity decayed
to the time the image is referenced to: the series start for DecayCorrection START, the injection itself for
ADMIN. Philips images in counts (Units CNTS) carry their own SUV scale factor in (7053,1000).
"""
from __future__ import annotations

from datetime import datetime

PHILIPS_SUV_SCALE = (0x7053, 0x1000)


class SUVError(ValueError):
    """Why this series cannot give a correct SUV (one line, for the report)."""


def _datetime(date: str, time: str) -> datetime | None:
    if not date or not time:
        return None
    time = str(time).split(".")[0].ljust(6, "0")[:6]
    try:
        return datetime.strptime(f"{date}{time}", "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _datetime_attr(value: str) -> datetime | None:
    text = str(value or "").split("+")[0].split("-")[0]
    return _datetime(text[:8], text[8:]) if len(text) >= 12 else None


def injection_time(ds) -> datetime | None:
    info = ds.RadiopharmaceuticalInformationSequence[0]
    exact = _datetime_attr(info.get("RadiopharmaceuticalStartDateTime", ""))
    if exact is not None:
        return exact
    # Only a time: the injection was on the series' day (as in practice; a scan after midnight is refused below).
    return _datetime(str(ds.get("SeriesDate", "") or ds.get("StudyDate", "")),
                     str(info.get("RadiopharmaceuticalStartTime", "")))


def series_reference_time(ds) -> datetime | None:
    return _datetime(str(ds.get("SeriesDate", "")), str(ds.get("SeriesTime", ""))) or \
        _datetime(str(ds.get("AcquisitionDate", "")), str(ds.get("AcquisitionTime", "")))


def suv_factor(ds) -> float:
    """Multiply the rescaled pixel values of this PET series by this to get SUVbw; raises SUVError."""
    units = str(ds.get("Units", "")).upper()
    if units == "CNTS":
        scale = ds.get(PHILIPS_SUV_SCALE)
        if scale is None or not float(scale.value) > 0:
            raise SUVError("Units CNTS without the Philips SUV scale factor (7053,1000)")
        return float(scale.value)
    if units != "BQML":
        raise SUVError(f"Units {units or 'missing'}: only BQML (or Philips CNTS with its SUV scale factor) "
                       "give a correct SUV")
    weight = float(ds.get("PatientWeight", 0) or 0)
    if weight <= 0:
        raise SUVError("no patient weight (0010,1030)")
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise SUVError("no Radiopharmaceutical Information Sequence (dose, half-life, injection time)")
    info = seq[0]
    dose, half_life = float(info.get("RadionuclideTotalDose", 0) or 0), float(info.get("RadionuclideHalfLife", 0) or 0)
    if dose <= 0:
        raise SUVError("no injected dose (RadionuclideTotalDose)")
    if half_life <= 0:
        raise SUVError("no half-life (RadionuclideHalfLife)")
    correction = str(ds.get("DecayCorrection", "")).upper()
    if correction == "ADMIN":
        decayed = dose  # the image is already referenced to the injection
    elif correction == "START":
        injected, start = injection_time(ds), series_reference_time(ds)
        if injected is None:
            raise SUVError("no injection time (RadiopharmaceuticalStartDateTime or StartTime)")
        if start is None:
            raise SUVError("no series date and time to decay-correct to")
        elapsed = (start - injected).total_seconds()
        if elapsed < 0:
            raise SUVError(f"injection ({injected}) after the series start ({start})")
        decayed = dose * 2.0 ** (-elapsed / half_life)
    else:
        raise SUVError(f"DecayCorrection {correction or 'missing'}: only START and ADMIN are supported")
    return weight * 1000.0 / decayed
