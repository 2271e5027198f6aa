"""The Sachs et al. (2005) flow-cytometry data: 11 phosphoproteins in single human CD4⁺ T
cells under nine stimulatory and inhibitory conditions, with the literature targets of each
reagent and the 18-edge consensus graph.

The cells and the graph are vendored (gzip-compressed, checksummed) from the `cdt` 0.6.0
wheel; `data/sachs/PROVENANCE.md` says where from, under which licence, and how the
condition of each row was reconstructed (the file has no condition column: its rows are the
nine original files stacked in file order, `CONDITIONS[k].n_cells` rows each). Nothing is
downloaded at run time.

- `sachs(...)`: a `SachsData` — the cells as a `PerturbationData` (one context per condition,
  reagents one-hot as features, dose 1) plus the literature targets and the consensus graph.
- `CONDITIONS`: the nine conditions in file order, `Condition` records (reagent, whether it
  inhibits or activates, what it acts on, its measured targets, the sources and where they
  disagree).
- `CONDITION_SETS`: the named choices of conditions `sachs(conditions=...)` accepts.

Reference: K. Sachs, O. Perez, D. Pe'er, D. A. Lauffenburger, G. P. Nolan, "Causal
protein-signaling networks derived from multiparameter single-cell data", Science 308:523–529
(2005).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from gim_ppl.data import PerturbationData

#: The 11 measured proteins, in the column order of the vendored file (cdt's names).
PROTEINS = ("praf", "pmek", "plcg", "PIP2", "PIP3", "p44/42", "pakts473", "PKA", "PKC",
            "P38", "pjnk")

DATA_FILE = "cyto_full_data.csv.gz"
GRAPH_FILE = "cyto_full_target.csv.gz"
#: sha256 of the vendored (gzip -n -9) files; `load_raw` refuses files that differ.
SHA256 = {
    DATA_FILE: "a9802bf6ef81ecf125266e0c0fcfec6ffce2a7cccbe5e83bc6c1220f31f9da00",
    GRAPH_FILE: "150bcc3de793a24f2e43af90838b2c186cd12f4a90a21d1f4f49676073523da9",
}

SACHS_2005 = "Sachs et al. 2005, Science 308:523, Fig. 1 / Table 1 (reagents and targets)"
WANG_2017 = ("Wang, Solus, Yang, Uhler 2017, NeurIPS (IGSP), Sachs experiment: five "
             "interventions with targets Akt, PKC, PIP2, Mek, PIP3")
SQUIRES_2020 = ("Squires, Wang, Uhler 2020, UAI (UT-IGSP): the same five interventional "
                "settings, targets treated as unknown")


@dataclasses.dataclass(frozen=True)
class Condition:
    """One of the nine conditions of Sachs et al. (2005).

    Attributes:
        name: short name, also the context name (`"cd3cd28"`, `"akt_inhibitor"`, ...).
        reagent: the reagent added (or the stimulation, for the reference).
        effect: `"stimulation"` (the reference), `"co-stimulation"`, `"inhibits"` or
            `"activates"`.
        acts_on: the molecule the reagent acts on, in Sachs et al.'s words (it may be
            unmeasured, e.g. PI3K).
        targets: the measured proteins (names in `PROTEINS`) taken as its targets here.
        sources: where `targets` come from.
        adds_to_reference: True when the reagent is added to the anti-CD3/CD28 stimulation;
            False when it replaces it (PMA, β2cAMP).
        n_cells: rows of the condition in the vendored file.
        note: where sources disagree or the data surprise ("" if neither).
    """

    name: str
    reagent: str
    effect: str
    acts_on: str
    targets: tuple
    sources: tuple
    adds_to_reference: bool
    n_cells: int
    note: str = ""


#: The nine conditions in the order of their rows in the vendored file.
CONDITIONS = (
    Condition("cd3cd28", "anti-CD3/CD28", "stimulation", "T-cell receptor / CD28", (),
              (SACHS_2005,), True, 853,
              "the reference: general stimulation, no reagent; observational here"),
    Condition("icam2", "ICAM-2", "co-stimulation", "LFA-1", (), (SACHS_2005,), True, 902,
              "a co-stimulation without a measured target; Wang et al. 2017 pool it with the "
              "reference as observational data (853 + 902 = 1755 cells)"),
    Condition("akt_inhibitor", "AKT inhibitor", "inhibits", "Akt", ("pakts473",),
              (SACHS_2005, WANG_2017), True, 911,
              "inhibits Akt's kinase activity, not necessarily its S473 phosphorylation, "
              "which is what is measured (in these data pakts473 rises by ~0.3 reference sd)"),
    Condition("g06976", "G06976", "inhibits", "PKC", ("PKC",), (SACHS_2005, WANG_2017), True,
              723,
              "the data shift 10 of 11 proteins by more than 1.5 reference sd (PKA down ~5 sd, "
              "P38 and pmek up ~5 sd): far broader than PKC alone"),
    Condition("psitectorigenin", "psitectorigenin", "inhibits", "PIP2", ("PIP2",),
              (SACHS_2005, WANG_2017), True, 810, ""),
    Condition("u0126", "U0126", "inhibits", "MEK", ("pmek",), (SACHS_2005, WANG_2017), True,
              799,
              "inhibits MEK's kinase activity: phospho-MEK rises (~4 sd) and its substrate "
              "p44/42 (Erk) falls (~2 sd)"),
    Condition("ly294002", "LY294002", "inhibits", "PI3K", ("PIP3",), (WANG_2017,), True, 848,
              "Sachs et al. name PI3K, which is not measured; Wang et al. 2017 take PIP3 as the "
              "target; in these data PIP3 moves by only ~0.25 sd"),
    Condition("pma", "PMA", "activates", "PKC", ("PKC",), (SACHS_2005,), False, 913,
              "replaces the anti-CD3/CD28 stimulation (cells not stimulated through the TCR); "
              "in these data PKC moves by only ~0.2 reference sd"),
    Condition("b2camp", "β2cAMP", "activates", "PKA", ("PKA",), (SACHS_2005,), False, 707,
              "replaces the anti-CD3/CD28 stimulation (cells not stimulated through the TCR); "
              "in these data PKA barely moves (< 0.1 sd) while pmek falls ~4.5 sd"),
)
REFERENCE = "cd3cd28"
_BY_NAME = {c.name: c for c in CONDITIONS}
INHIBITORS = ("akt_inhibitor", "g06976", "psitectorigenin", "u0126", "ly294002")

#: Named condition choices: `(conditions, observational)`. The reference is observational in
#: all. "inhibitors" (default): the reference and the five inhibitors added to it (each
#: context then differs from the reference by one reagent). "igsp": the same with ICAM-2 as a
#: second observational context, the split of Wang et al. 2017 and Squires et al. 2020.
#: "all": the nine conditions, ICAM-2, PMA and β2cAMP as perturbations.
CONDITION_SETS = {
    "inhibitors": ((REFERENCE, *INHIBITORS), (REFERENCE,)),
    "igsp": ((REFERENCE, "icam2", *INHIBITORS), (REFERENCE, "icam2")),
    "all": (tuple(c.name for c in CONDITIONS), (REFERENCE,)),
}


@dataclasses.dataclass(frozen=True)
class SachsData:
    """The Sachs data as `sachs()` prepared it.

    Attributes:
        data: `PerturbationData`: `x (n_cells, 11)`, one context per condition (names
            `Condition.name`), `features (n_contexts, n_reagents)` one-hot over the
            perturbational conditions (zeros for observational ones), dose 1 (0 for
            observational ones).
        conditions: the `Condition` of each context, `(n_contexts,)` in context order.
        targets: `(n_contexts, 11)` bool literature targets (`Condition.targets`); all False
            for observational contexts and for conditions without a measured target.
        consensus: `(11, 11)` bool consensus graph, i → j, 18 edges (one cycle, see
            `consensus_graph`).
        transform: what was done to the raw intensities, in words.
        center, scale: `(11,)` the values subtracted and divided by (after the log), zeros
            and ones when not standardised.
    """

    data: PerturbationData
    conditions: tuple
    targets: np.ndarray
    consensus: np.ndarray
    transform: str
    center: np.ndarray
    scale: np.ndarray

    @property
    def var_names(self) -> tuple:
        return self.data.var_names

    @property
    def perturbational(self) -> np.ndarray:
        """`(n_contexts,)` bool, True for the contexts with a reagent."""
        return ~np.asarray(self.data.observational)

    def target_labels(self) -> np.ndarray:
        """`(n_perturbational, 11)` bool literature targets of the perturbational contexts,
        the labels target scores are ranked against."""
        return self.targets[self.perturbational]

    def scored(self) -> np.ndarray:
        """`(n_perturbational,)` bool: perturbational contexts with at least one literature
        target (ICAM-2 has none)."""
        return self.target_labels().any(1)


def _read_verified(name: str) -> bytes:
    raw = resources.files("gim_ppl.datasets").joinpath("data", "sachs", name).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise RuntimeError(f"vendored Sachs file {name} has sha256 {digest}, expected "
                           f"{SHA256[name]}: the package data is damaged")
    return gzip.decompress(raw)


def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """The vendored file as it is: `(x (7466, 11) raw intensities, condition (7466,) int index
    into CONDITIONS)`, after checking both files' sha256."""
    text = _read_verified(DATA_FILE).decode()
    header = text.split("\n", 1)[0].strip().split(",")
    if tuple(header) != PROTEINS:
        raise RuntimeError(f"unexpected columns in {DATA_FILE}: {header}")
    x = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1)
    sizes = [c.n_cells for c in CONDITIONS]
    if x.shape != (sum(sizes), len(PROTEINS)):
        raise RuntimeError(f"{DATA_FILE} has shape {x.shape}, expected ({sum(sizes)}, 11)")
    return x, np.repeat(np.arange(len(CONDITIONS)), sizes)


def consensus_graph() -> np.ndarray:
    """`(11, 11)` bool consensus graph (i → j, rows and columns in `PROTEINS` order), the 18
    edges of cdt's `cyto_full_target.csv`. Not a DAG: it holds the loop plcg → PIP2 → PIP3
    → plcg, so a DAG scores SHD ≥ 1 against it."""
    text = _read_verified(GRAPH_FILE).decode()
    index = {p: i for i, p in enumerate(PROTEINS)}
    adj = np.zeros((len(PROTEINS), len(PROTEINS)), dtype=bool)
    for line in text.strip().splitlines()[1:]:
        cause, effect = (s.strip().strip('"') for s in line.split(","))
        adj[index[cause], index[effect]] = True
    return adj


def _condition_names(conditions) -> tuple[tuple, tuple]:
    """`(names, observational names)` of a `conditions` argument, validated."""
    if isinstance(conditions, str):
        if conditions not in CONDITION_SETS:
            raise ValueError(f"conditions must be one of {tuple(CONDITION_SETS)} or a sequence "
                             f"of condition names from {tuple(_BY_NAME)}, got {conditions!r}")
        return CONDITION_SETS[conditions]
    names = tuple(str(c) for c in conditions)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"conditions has unknown names {unknown}; choose from "
                         f"{tuple(_BY_NAME)}")
    if len(set(names)) != len(names):
        raise ValueError(f"conditions has repeated names: {list(names)}")
    if REFERENCE not in names:
        raise ValueError(f"conditions must include the reference {REFERENCE!r} (the "
                         f"observational context), got {list(names)}")
    if len(names) < 2:
        raise ValueError(f"conditions needs the reference and at least one other condition, "
                         f"got {list(names)}")
    # file order, whatever the order given: context k is always the k-th chosen condition
    names = tuple(c.name for c in CONDITIONS if c.name in names)
    return names, (REFERENCE,)


def sachs(log: bool = True, conditions: str | Sequence[str] = "inhibitors", *,
          standardize: bool = True) -> SachsData:
    """The Sachs et al. (2005) cells as a `PerturbationData`, with literature targets and the
    consensus graph.

    Args:
        log: natural log of the raw intensities (positive, heavy-tailed; the file floors
            them at 1, so floored values become 0).
        conditions: a name in `CONDITION_SETS` — "inhibitors" (default: the anti-CD3/CD28
            reference, observational, and the five inhibitors added to it), "igsp" (the same
            plus ICAM-2 as a second observational context, as in the IGSP and UT-IGSP
            papers) or "all" (the nine conditions; ICAM-2, PMA and β2cAMP as perturbations,
            although PMA and β2cAMP replace the reference stimulation instead of adding to
            it) — or a sequence of names from `CONDITIONS` that includes "cd3cd28" (then
            only the reference is observational). Contexts follow the file order.
        standardize: subtract the reference condition's mean and divide by its sd, per
            protein (after the log): shifts then read in reference sds, and the model's
            unit-scale priors fit every protein alike.

    Returns:
        A `SachsData`.

    Raises:
        ValueError: `conditions` or `log`/`standardize` not as described.

    Example:
        >>> s = sachs()
        >>> s.data.n_contexts, s.data.n_features, int(s.consensus.sum())
        (6, 5, 18)
    """
    # here, not at the top: `gim_ppl.datasets` imports this module eagerly (`sachs` is both
    # a module and a function) and loads no jax
    from gim_ppl.data import PerturbationData

    if not isinstance(log, (bool, np.bool_)):
        raise ValueError(f"log must be True or False, got {log!r}")
    if not isinstance(standardize, (bool, np.bool_)):
        raise ValueError(f"standardize must be True or False, got {standardize!r}")
    names, observational = _condition_names(conditions)
    x_raw, condition = load_raw()
    order = [tuple(c.name for c in CONDITIONS).index(n) for n in names]
    keep = np.isin(condition, order)
    remap = np.full(len(CONDITIONS), -1)
    remap[order] = np.arange(len(order))
    x, context = x_raw[keep], remap[condition[keep]]
    x = np.log(x) if log else x
    ref = context == names.index(REFERENCE)
    if standardize:
        center, scale = x[ref].mean(0), x[ref].std(0)
        x = (x - center) / scale
    else:
        center, scale = np.zeros(len(PROTEINS)), np.ones(len(PROTEINS))
    transform = (("natural log, " if log else "raw intensities, ")
                 + ("standardised by the anti-CD3/CD28 reference's mean and sd per protein"
                    if standardize else "not standardised"))

    chosen = tuple(_BY_NAME[n] for n in names)
    obs = np.array([c.name in observational for c in chosen])
    reagents = [c.name for c, o in zip(chosen, obs, strict=True) if not o]
    features = np.zeros((len(chosen), len(reagents)))
    perturbation = np.full(len(chosen), -1)
    for k, c in enumerate(chosen):
        if not obs[k]:
            perturbation[k] = reagents.index(c.name)
            features[k, perturbation[k]] = 1.0
    data = PerturbationData.from_arrays(
        x, context, features=features, dose=(~obs).astype(float), observational=obs,
        perturbation=perturbation, var_names=PROTEINS, context_names=names,
        feature_names=reagents, perturbation_names=reagents)
    targets = np.array([[p in c.targets for p in PROTEINS] for c in chosen], dtype=bool)
    targets[obs] = False
    return SachsData(data, chosen, targets, consensus_graph(), transform, center, scale)


__all__ = ["CONDITIONS", "CONDITION_SETS", "PROTEINS", "REFERENCE", "SHA256", "Condition",
           "SachsData", "consensus_graph", "load_raw", "sachs"]
