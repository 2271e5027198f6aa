"""Train/test splits of contexts, and centring cells on the controls.

Every function takes any `PerturbationData` (a drug screen from `from_anndata`, or
`synthetic_hill`'s contexts) and returns new objects; the input is never modified.

- `holdout_dose`, `holdout_perturbations`, `holdout_highest_doses`: `(train, test)` pairs;
  `sciplex3_splits`: the sci-Plex3 protocol (each perturbation's highest dose held out,
  one perturbation at a time).
- `center_on_controls` / `shift_cells`: fit on the cells minus the mean control cell (an
  exact reparametrisation of a linear SCM that MAP fitting handles far better), and add it
  back to predictions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import jax.numpy as jnp
import numpy as np

from gim_ppl.data import PerturbationData
from gim_ppl.datasets.doses import DoseScale

_MAX_SHOWN = 10


def _shown(values) -> str:
    values = list(values)
    more = f", … ({len(values)} in all)" if len(values) > _MAX_SHOWN else ""
    return "[" + ", ".join(repr(v) for v in values[:_MAX_SHOWN]) + more + "]"


def _perturbation_index(data: PerturbationData, perturbation: str) -> int:
    if perturbation not in data.perturbation_names:
        raise KeyError(f"perturbation {perturbation!r} is not in the data; perturbations: "
                       f"{_shown(data.perturbation_names)}")
    return data.perturbation_names.index(perturbation)


def _split(data: PerturbationData, test_mask: np.ndarray) -> tuple[PerturbationData,
                                                                   PerturbationData]:
    return data.subset(~test_mask), data.subset(test_mask)


def holdout_dose(data: PerturbationData, perturbation: str, dose: float, *,
                 dose_scale: DoseScale | None = None,
                 rtol: float = 1e-5) -> tuple[PerturbationData, PerturbationData]:
    """`(train, test)`: `test` is the context of `perturbation` at `dose`, `train` the rest.

    `dose` is in the unit of the data's doses: the file's unit for data from `from_anndata`
    (e.g. `holdout_dose(data, "JQ1", 10000.0)` for 10 µM when the file is in nM), model units
    for data without a dose scale (`synthetic_hill`). `dose_scale` overrides the data's
    scale (`DoseScale.model_units()` to give a model dose). The dose matches to relative
    precision `rtol` (doses are stored in float32).
    """
    p = _perturbation_index(data, perturbation)
    scale = DoseScale.of(data) if dose_scale is None else dose_scale
    model_dose = float(scale.to_model(dose))
    pert, doses = np.asarray(data.perturbation), np.asarray(data.dose, dtype=float)
    mine = pert == p
    hit = mine & np.isclose(doses, model_dose, rtol=rtol, atol=0.0)
    if not hit.any():
        have = scale.to_user(doses[mine])
        unit = "" if scale == DoseScale.model_units() else f" {scale.unit}"
        raise ValueError(f"{perturbation!r} has no context at dose {dose!r}{unit}; its doses: "
                         f"{_shown([float(f'{v:.6g}') for v in np.sort(have)])}{unit}")
    return _split(data, hit)


def holdout_perturbations(data: PerturbationData,
                          names: Sequence[str]) -> tuple[PerturbationData, PerturbationData]:
    """`(train, test)`: every context of the named perturbations in `test` (unseen drugs)."""
    if isinstance(names, str):
        names = [names]
    idx = [_perturbation_index(data, n) for n in names]
    if not idx:
        raise ValueError("names is empty: name at least one perturbation to hold out")
    return _split(data, np.isin(np.asarray(data.perturbation), idx))


def _highest_dose_mask(data: PerturbationData, p: int) -> np.ndarray:
    pert, doses = np.asarray(data.perturbation), np.asarray(data.dose, dtype=float)
    mine = pert == p
    return mine & (doses == doses[mine].max())


def holdout_highest_doses(data: PerturbationData) -> tuple[PerturbationData, PerturbationData]:
    """`(train, test)`: the highest dose of every perturbation held out at once (one fit)."""
    present, _ = data.perturbation_contexts()
    if present.size == 0:
        raise ValueError("data has no perturbational contexts to hold out")
    mask = np.zeros(data.n_contexts, dtype=bool)
    for p in present:
        mask |= _highest_dose_mask(data, int(p))
    return _split(data, mask)


def sciplex3_splits(data: PerturbationData) -> Iterator[tuple[PerturbationData,
                                                              PerturbationData]]:
    """The sci-Plex3 protocol: for each perturbation (in name order), `(train, test)` with
    its highest dose as `test` and every other context (all other drugs' doses, its lower
    doses, the controls) as `train`."""
    present, _ = data.perturbation_contexts()
    if present.size == 0:
        raise ValueError("data has no perturbational contexts to hold out")
    for p in sorted(present.tolist(), key=lambda i: data.perturbation_names[i]):
        yield _split(data, _highest_dose_mask(data, p))


def center_on_controls(data: PerturbationData) -> tuple[PerturbationData, np.ndarray]:
    """`(centred, offset)`: every cell minus `offset (n_vars,)`, the mean control cell.

    For a linear SCM this is an exact reparametrisation (only the bias changes: b' =
    b − offset·(I − W)), and it conditions MAP fitting far better: log expression sits near
    5, where edge weights and biases are strongly coupled. Add `offset` back to predicted
    cells with `shift_cells`.
    """
    if data.x is None:
        raise ValueError("center_on_controls needs cells (data.x is None)")
    has_controls = np.asarray(data.observational).any()
    controls = data.control_cells() if has_controls else np.zeros((0, data.n_vars))
    if controls.shape[0] == 0:
        raise ValueError("data has no control (observational) cells to centre on")
    offset = controls.mean(0)
    return shift_cells(data, -offset), offset


def shift_cells(data: PerturbationData, offset) -> PerturbationData:
    """The same contexts with every cell's `x` plus `offset (n_vars,)`."""
    offset = np.asarray(offset, dtype=float)
    if offset.shape != (data.n_vars,):
        raise ValueError(f"offset must have shape ({data.n_vars},), got {offset.shape}")
    if data.x is None:
        raise ValueError("shift_cells needs cells (data.x is None)")
    moments = data.moments  # a shift moves the means and leaves the scatter as it is
    if moments is not None:
        moments = moments._replace(mean=moments.mean + jnp.asarray(offset, moments.mean.dtype))
    return data.replace(x=data.x + jnp.asarray(offset, data.x.dtype), moments=moments)


__all__ = [
    "center_on_controls",
    "holdout_dose",
    "holdout_highest_doses",
    "holdout_perturbations",
    "sciplex3_splits",
    "shift_cells",
]
