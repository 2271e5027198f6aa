"""Doses: the unit of a screen's dose column and the map to the model's dose.

`DoseScale` maps doses in the user's unit to the model's dose and back (so that EC50 is
reported in the user's unit); `from_anndata` stores it in the data it returns
(`data.dose_scale`), and `DoseScale.of(data)` reads it back (the identity scale, in model
units, for data without one). `dose_response` evaluates fitted Hill curves in user units.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Molar units as powers of ten (exact integers, so that e.g. 1 µM in nM is exactly 1000).
MOLAR_UNITS = {"pM": -12, "nM": -9, "uM": -6, "µM": -6, "μM": -6, "mM": -3, "M": 0}
# Spelled-out names, matched without case ("Nanomolar", "micromolar"); the symbols above
# are matched exactly, since "mM" (milli) and "MM" must not be confused.
MOLAR_WORDS = {"picomolar": -12, "nanomolar": -9, "micromolar": -6, "millimolar": -3,
               "molar": 0}
#: The molar spellings `molar_exponent` accepts (for help texts and messages).
MOLAR_SPELLINGS = (*MOLAR_UNITS, *MOLAR_WORDS)


def molar_exponent(unit: str) -> int | None:
    """Power of ten of a molar `unit` (nM → −9; "micromolar", "uM", "µM", "μM" → −6), or
    None when `unit` is not one of `MOLAR_SPELLINGS` (doses are then used as given)."""
    text = str(unit).strip()
    if text in MOLAR_UNITS:
        return MOLAR_UNITS[text]
    return MOLAR_WORDS.get(text.lower())


@dataclasses.dataclass(frozen=True)
class DoseScale:
    """Map between doses in the user's unit and the model's dose.

    model dose = dose / reference (`log=False`), or log1p(dose / reference) (`log=True`);
    both keep 0 ↦ 0 (no effect) and are increasing, so the dose of half-maximal effect maps
    back exactly: `to_user(ec50_model)` is the EC50 in `unit`. With `log=True` the Hill
    coefficient refers to the model's log-dose axis.

    unit: the unit of the dose column (e.g. "nM"); reference: the user dose that becomes
    1.0 in the model (default `for_unit`: 1 µM for molar units, else 1).
    """

    unit: str = "nM"
    reference: float = 1000.0
    log: bool = False

    def __post_init__(self):
        if not (isinstance(self.reference, (int, float)) and math.isfinite(self.reference)
                and self.reference > 0):
            raise ValueError(f"DoseScale.reference must be a finite number > 0, got "
                             f"{self.reference!r}")

    @classmethod
    def for_unit(cls, unit: str, *, log: bool = False,
                 reference: float | None = None) -> DoseScale:
        """Default scale: 1 µM expressed in a molar `unit` (any of `MOLAR_SPELLINGS`) becomes
        model dose 1; other units keep their doses (reference 1)."""
        if reference is None:
            exponent = molar_exponent(unit)
            reference = 1.0 if exponent is None else 10.0 ** (-6 - exponent)
        return cls(str(unit), float(reference), bool(log))

    @classmethod
    def model_units(cls) -> DoseScale:
        """The identity scale: doses as the model sees them (unit "model units")."""
        return cls("model units", 1.0, False)

    @classmethod
    def of(cls, data) -> DoseScale:
        """The scale a `PerturbationData` carries (`from_anndata` sets it), or
        `DoseScale.model_units()` when it carries none (e.g. `synthetic_hill`)."""
        scale = getattr(data, "dose_scale", None)
        return cls.model_units() if scale is None else scale

    def to_model(self, dose) -> np.ndarray:
        """User-unit doses (any shape, ≥ 0) → model doses (same shape)."""
        c = np.asarray(dose, dtype=float) / self.reference
        return np.log1p(c) if self.log else c

    def to_user(self, dose) -> np.ndarray:
        """Model doses (e.g. EC50 = exp(log_ec50)) → doses in `unit` (same shape)."""
        c = np.asarray(dose, dtype=float)
        return self.reference * (np.expm1(c) if self.log else c)


def dose_response(scale: DoseScale, dose, emax, ec50, hill) -> np.ndarray:
    """Hill shift `emax · a(dose)` at user-unit doses, with EC50 in user units.

    `dose (n_doses,)`; `emax, ec50, hill` broadcastable to each other, e.g. `(n_vars,)`;
    returns `(n_doses, *broadcast shape)`. `a = 0` at dose 0 and `1/2` at `ec50`.
    """
    c = scale.to_model(np.asarray(dose, dtype=float))
    e = scale.to_model(np.asarray(ec50, dtype=float))
    c = c.reshape(c.shape + (1,) * np.ndim(e))
    from scipy.special import expit

    with np.errstate(divide="ignore", invalid="ignore"):
        logit = np.asarray(hill) * (np.log(c) - np.log(e))
    return np.asarray(emax) * np.where(c > 0, expit(logit), 0.0)


__all__ = ["MOLAR_SPELLINGS", "MOLAR_UNITS", "DoseScale", "dose_response", "molar_exponent"]
