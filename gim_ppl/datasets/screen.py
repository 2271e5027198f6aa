"""Single-cell drug screens: the sci-Plex3 schema, drug features and a toy screen.

Real screens arrive as AnnData (`.h5ad`); `gim_ppl.datasets.from_anndata` turns one into
contexts (one per drug and dose, plus the vehicle control), `gim_ppl.datasets.doses` holds
the dose units and `gim_ppl.datasets.splits` the train/test splits. This module holds:

- `SCIPLEX3`: the obs column names of the common preprocessed sci-Plex3 files (Srivatsan et
  al. 2020), as a `ScreenSchema`; `dataclasses.replace` maps another file's names.
- `drug_features`: RDKit descriptors of drugs from SMILES (Morgan fingerprints reduced by
  PCA, or standardised RDKit 2D descriptors), as a DataFrame indexed by drug name;
  `drug_smiles` reads the SMILES column of a screen.
- `toy_screen`: a small AnnData in the sci-Plex3 schema with real SMILES and a planted GIM
  ground truth (`ScreenTruth`; the data the tests, the CLI test and the notebooks use).

anndata, RDKit, scikit-learn and pandas are imported inside the functions that need them
(`pip install "gim_ppl[screen]"`), so `import gim_ppl` works without them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gim_ppl.errors import ArgumentError, ArgumentTypeError
from gim_ppl.extras import require

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_MAX_SHOWN = 10


def _shown(values) -> str:
    values = list(values)
    more = f", … ({len(values)} in all)" if len(values) > _MAX_SHOWN else ""
    return "[" + ", ".join(repr(v) for v in values[:_MAX_SHOWN]) + more + "]"


# --- the sci-Plex3 schema ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScreenSchema:
    """Names of the obs columns of a drug screen, and the unit of its dose column.

    perturbation_key: drug name per cell; dose_key: numeric dose per cell (in `dose_unit`);
    cell_type_key: cell line per cell; smiles_key: SMILES string per cell (one per drug);
    control: a boolean obs column marking vehicle cells, or the drug name of vehicle cells.
    """

    perturbation_key: str = "product_name"
    dose_key: str = "dose"
    dose_unit: str = "nM"
    cell_type_key: str = "cell_type"
    smiles_key: str = "SMILES"
    control: str = "vehicle"

    def from_anndata_kwargs(self) -> dict:
        """Keyword arguments of `gim_ppl.datasets.from_anndata` that this schema fixes."""
        return {
            "perturbation_key": self.perturbation_key,
            "dose_key": self.dose_key,
            "control": self.control,
            "dose_unit": self.dose_unit,
            "cell_type_key": self.cell_type_key,
        }


SCIPLEX3 = ScreenSchema()
"""sci-Plex3 as released by Srivatsan et al. (2020) and kept by most preprocessed copies:
obs `product_name` (drug; "Vehicle" for controls), `dose` (nM: 10, 100, 1000, 10000; 0 for
vehicle), `cell_type` (A549, K562, MCF7), `SMILES`, `vehicle` (bool). For another layout,
e.g. scPerturb's (`perturbation`, `dose_value`, `cell_line`, controls named "control"), use
`dataclasses.replace(SCIPLEX3, perturbation_key="perturbation", dose_key="dose_value",
cell_type_key="cell_line", control="control")`."""

CONTROL_NAME = "Vehicle"
CONTROL_SMILES = "CS(C)=O"  # DMSO, the vehicle of sci-Plex3


# --- drug features -----------------------------------------------------------------------


def drug_smiles(adata, *, perturbation_key: str = SCIPLEX3.perturbation_key,
                smiles_key: str = SCIPLEX3.smiles_key,
                control: str | None = SCIPLEX3.control) -> dict[str, str]:
    """`{drug: SMILES}` from the obs columns of a screen (control cells skipped).

    Raises ValueError naming every drug without a SMILES or with several different ones.
    """
    # here, not at the top: the schema (`SCIPLEX3`) is read without jax (gim-ppl --preset)
    from gim_ppl.datasets.anndata import control_mask, require_obs_key

    obs = adata.obs
    require_obs_key(obs, perturbation_key, "perturbation_key")
    require_obs_key(obs, smiles_key, "smiles_key")
    keep = np.ones(obs.shape[0], dtype=bool)
    if control is not None:
        keep = ~control_mask(obs, perturbation_key, control)
    drugs = obs[perturbation_key].astype(object).to_numpy()[keep]
    smiles = obs[smiles_key].astype(object).to_numpy()[keep]
    found: dict[str, set] = {}
    for drug, s in zip(drugs, smiles, strict=True):
        entry = found.setdefault(str(drug), set())
        if isinstance(s, str) and s.strip():
            entry.add(s.strip())
    missing = sorted(d for d, s in found.items() if not s)
    if missing:
        raise ArgumentError(
            f"obs[{smiles_key!r}] has no SMILES for the drugs {_shown(missing)}; give every "
            "drug a SMILES, or pass a features DataFrame indexed by drug name instead",
            argument="smiles_key"
        )
    several = sorted(d for d, s in found.items() if len(s) > 1)
    if several:
        raise ArgumentError(f"obs[{smiles_key!r}] has several different SMILES for the drugs "
                            f"{_shown(several)}; expected one per drug", argument="smiles_key")
    return {d: next(iter(s)) for d, s in sorted(found.items())}


def _molecules(smiles: Mapping[str, str]) -> dict:
    chem = require("rdkit.Chem")
    rdbase = require("rdkit.rdBase")
    if not isinstance(smiles, Mapping):
        raise ArgumentTypeError(f"smiles must be a mapping {{drug name: SMILES}}, got "
                                f"{type(smiles).__name__}", argument="smiles")
    if not smiles:
        raise ArgumentError("smiles is empty: give at least one {drug name: SMILES}",
                            argument="smiles")
    mols = {}
    with rdbase.BlockLogs():  # RDKit's own parse errors are replaced by the one below
        for name, s in smiles.items():
            if not isinstance(s, str) or not s.strip():
                raise ArgumentError(f"drug {name!r} has no SMILES (got {s!r})", argument="smiles")
            mol = chem.MolFromSmiles(s)
            if mol is None:
                raise ArgumentError(f"invalid SMILES for drug {name!r}: {s!r} (RDKit cannot "
                                    "parse it)", argument="smiles")
            mols[str(name)] = mol
    return mols


def drug_features(smiles: Mapping[str, str], kind: str = "morgan",
                  n_components: int | None = None, *, radius: int = 2,
                  n_bits: int = 2048) -> pd.DataFrame:
    """Numeric drug descriptors, a DataFrame `(n_drugs, n_features)` indexed by drug name.

    kind="morgan": Morgan fingerprints (`radius`, `n_bits`) reduced by PCA to
    `n_components` whitened components (default `min(16, n_drugs − 1)`; at most
    `n_drugs − 1`, the rank of centred fingerprints). kind="rdkit2d": RDKit's 2D descriptors,
    non-finite and constant columns dropped, each standardised to mean 0 and sd 1 over the
    drugs; with `n_components`, reduced by whitened PCA as well. Whitening puts every feature
    on the unit scale the GIM's priors on feature weights assume.

    Raises ValueError naming a drug whose SMILES is missing or cannot be parsed.

    Example:
        >>> drug_features({"aspirin": "CC(=O)Oc1ccccc1C(=O)O", "caffeine":
        ...                "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "ethanol": "CCO"}, n_components=2)
    """
    pd = require("pandas")
    if kind not in ("morgan", "rdkit2d"):
        raise ArgumentError(f"kind must be 'morgan' or 'rdkit2d', got {kind!r}", argument="kind")
    mols = _molecules(smiles)
    names = list(mols)
    if kind == "morgan":
        gen_mod = require("rdkit.Chem.rdFingerprintGenerator")
        gen = gen_mod.GetMorganGenerator(radius=int(radius), fpSize=int(n_bits))
        raw = np.stack([gen.GetFingerprintAsNumPy(m).astype(float) for m in mols.values()])
        columns = [f"morgan_{i}" for i in range(raw.shape[1])]
        if n_components is None:
            n_components = min(16, len(names) - 1)
    else:
        descriptors = require("rdkit.Chem.Descriptors")
        columns = [name for name, _ in descriptors.descList]
        with np.errstate(all="ignore"):
            raw = np.array([[float(fn(m)) for _, fn in descriptors.descList]
                            for m in mols.values()])
        keep = np.isfinite(raw).all(0) & (np.nanstd(raw, 0) > 1e-12)
        raw, columns = raw[:, keep], [c for c, k in zip(columns, keep, strict=True) if k]
        if n_components is None:
            sd = raw.std(0)
            return pd.DataFrame((raw - raw.mean(0)) / np.where(sd > 0, sd, 1.0),
                                index=pd.Index(names, name="perturbation"),
                                columns=[f"rdkit2d_{c}" for c in columns])
    n_components = int(n_components)
    if not 1 <= n_components <= len(names) - 1:
        raise ArgumentError(
            f"n_components must be between 1 and n_drugs − 1 = {len(names) - 1} (PCA of "
            f"{len(names)} drugs has at most that many informative components), got "
            f"{n_components}",
            argument="n_components"
        )
    decomposition = require("sklearn.decomposition")
    pca = decomposition.PCA(n_components=n_components, whiten=True, svd_solver="full")
    z = pca.fit_transform(raw)
    return pd.DataFrame(z, index=pd.Index(names, name="perturbation"),
                        columns=[f"{kind}_pc{i}" for i in range(n_components)])


# --- a toy screen with a planted ground truth ---------------------------------------------

# Well-known drugs (most are in sci-Plex3) and their SMILES (isomeric where it matters).
TOY_DRUGS: dict[str, str] = {
    "Dexamethasone": "C[C@@H]1C[C@H]2[C@@H]3CCC4=CC(=O)C=C[C@@]4([C@]3([C@H](C[C@@]2([C@]1"
                     "(C(=O)CO)O)C)O)F)C",
    "Vorinostat": "ONC(=O)CCCCCCC(=O)Nc1ccccc1",
    "Imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
    "Gefitinib": "COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1",
    "Erlotinib": "COCCOc1cc2ncnc(Nc3cccc(c3)C#C)c2cc1OCCOC",
    "Doxorubicin": "COc1cccc2C(=O)c3c(O)c4C[C@](O)(C[C@H](O[C@H]5C[C@H](N)[C@H](O)[C@H](C)O5)"
                   "c4c(O)c3C(=O)c12)C(=O)CO",
    "Methotrexate": "CN(Cc1cnc2nc(N)nc(N)c2n1)c1ccc(cc1)C(=O)N[C@@H](CCC(=O)O)C(=O)O",
    "Fluorouracil": "O=c1[nH]cc(F)c(=O)[nH]1",
    "Tamoxifen": r"CC/C(=C(\c1ccccc1)c1ccc(OCCN(C)C)cc1)c1ccccc1",
    "JQ1": "Cc1sc2c(c1C)C(c1ccc(Cl)cc1)=N[C@@H](CC(=O)OC(C)(C)C)c1nnc(C)n1-2",
    "Dasatinib": "Cc1nc(Nc2ncc(s2)C(=O)Nc2c(C)cccc2Cl)cc(n1)N1CCN(CCO)CC1",
    "Bortezomib": "CC(C)C[C@H](NC(=O)[C@@H](Cc1ccccc1)NC(=O)c1cnccn1)B(O)O",
}

SCIPLEX3_DOSES_NM = (10.0, 100.0, 1000.0, 10000.0)


@dataclasses.dataclass(frozen=True)
class ScreenTruth:
    """The planted model of `toy_screen`, on the log scale of normalised expression.

    genes: `(d,)` planted gene names; drugs: `(n_drugs,)`; smiles: {drug: SMILES};
    doses: the doses (in `dose_unit`); cell_types: the cell types generated.
    adjacency `(d, d)` bool (i → j), weights `(d, d)`; bias `(n_cell_types, d)` and
    noise_scale `(d,)` of the linear SCM `x = x W + bias + u + σ ε` in log counts per 10⁴;
    targets `(n_drugs, d)` bool; emax, ec50 (in `dose_unit`), hill: `(n_drugs, d)` (defined
    for every pair; only targets act).
    """

    genes: tuple
    drugs: tuple
    smiles: dict
    doses: tuple
    dose_unit: str
    cell_types: tuple
    adjacency: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    noise_scale: np.ndarray
    targets: np.ndarray
    emax: np.ndarray
    ec50: np.ndarray
    hill: np.ndarray

    def shift(self, drug: str, dose: float) -> np.ndarray:
        """`(d,)` true intervention shift of `drug` at `dose` (in `dose_unit`)."""
        i = self.drugs.index(drug)
        c = float(dose)
        a = 0.0 if c <= 0 else 1.0 / (1.0 + (self.ec50[i] / c) ** self.hill[i])
        return self.targets[i] * self.emax[i] * a

    def mean_log_expression(self, drug: str | None, dose: float = 0.0,
                            cell_type: str | None = None) -> np.ndarray:
        """`(d,)` mean of the planted log expression (SCM without count noise)."""
        b = self.bias[0 if cell_type is None else self.cell_types.index(cell_type)]
        u = np.zeros(len(self.genes)) if drug is None else self.shift(drug, dose)
        return np.linalg.solve((np.eye(len(self.genes)) - self.weights).T, b + u)


def toy_screen(
    seed: int = 0,
    *,
    n_drugs: int = 10,
    n_genes: int = 12,
    n_background_genes: int = 60,
    n_cells: int = 12,
    n_control: int = 120,
    doses: Sequence[float] = SCIPLEX3_DOSES_NM,
    cell_types: Sequence[str] = ("A549", "MCF7"),
    max_targets: int = 2,
    expected_degree: float = 1.0,
    ec50_range: tuple[float, float] = (30.0, 300.0),
    library_size: float = 10_000.0,
) -> tuple[Any, ScreenTruth]:
    """A small sci-Plex3-like screen with a planted GIM ground truth: `(adata, truth)`.

    Per cell type: `n_control` vehicle cells and `n_cells` cells per (drug, dose). Log
    expression of the `n_genes` planted genes follows a linear SCM on a random DAG (each
    pair joined with probability `expected_degree / (n_genes − 1)`, weights ±U[0.5, 1])
    with noise σ ∈ U[0.3, 0.5]. Each drug targets 1 to `max_targets` genes, dealt so that
    every gene is some drug's target when there are enough drugs, with a Hill shift (|emax| ∈
    U[1, 2] log units, EC50 log-uniform in `ec50_range` nM, Hill coefficient ∈ U[1, 2.5]).
    Cell types differ only in baseline expression.

    The default sparse graph (expected degree 1) is one a few hundred cells can orient; at
    expected degree 2 MAP fits of this small screen often misorient hub edges and absorb the
    error into spurious targets. Counts are Poisson with library sizes around `library_size`, and
    `n_background_genes` unperturbed genes make up most of each library, so normalising to
    10⁴ counts and log1p recovers the planted log scale closely.

    AnnData: X `(n_cells_total, n_genes + n_background_genes)` raw counts (CSR, float32);
    obs columns `product_name`, `dose` (nM), `cell_type`, `SMILES`, `vehicle` (the
    `SCIPLEX3` schema; vehicle cells are "Vehicle" at dose 0 with DMSO's SMILES); var index
    gene names (planted genes `G00`…, background `BG000`…).
    """
    ad = require("anndata")
    pd = require("pandas")
    sparse = require("scipy.sparse")
    if not 1 <= n_drugs <= len(TOY_DRUGS):
        raise ArgumentError(f"n_drugs must be between 1 and {len(TOY_DRUGS)}, got {n_drugs}",
                            argument="n_drugs")
    if n_genes < 2 or not 1 <= max_targets <= n_genes:
        raise ValueError("need n_genes >= 2 and 1 <= max_targets <= n_genes")
    if n_cells < 1 or n_control < 1 or not cell_types:
        raise ValueError("need n_cells >= 1, n_control >= 1 and at least one cell type")
    doses = tuple(float(c) for c in doses)
    if not doses or min(doses) <= 0:
        raise ArgumentError(f"doses must be positive, got {doses}", argument="doses")
    rng = np.random.default_rng(seed)
    d, n_ct = n_genes, len(cell_types)
    drugs = tuple(list(TOY_DRUGS)[:n_drugs])

    # Linear SCM on a random DAG over the planted genes (edges i → j only for i < j in a
    # random order).
    order = rng.permutation(d)
    upper = np.triu(rng.random((d, d)) < min(1.0, expected_degree / (d - 1)), k=1)
    adjacency = upper[np.ix_(np.argsort(order), np.argsort(order))]
    weights = np.where(adjacency, rng.choice([-1.0, 1.0], (d, d)) * rng.uniform(0.5, 1.0, (d, d)),
                       0.0)
    noise_scale = rng.uniform(0.3, 0.5, d)
    # Baseline means of log counts per 10⁴ (cell-type specific), turned into SCM biases:
    # x = μ + (u + σε)(I − W)⁻¹  ⇔  x = xW + μ(I − W) + u + σε.
    mu = rng.uniform(np.log(80.0), np.log(300.0), (n_ct, d))
    bias = mu @ (np.eye(d) - weights)

    # Targets: 1..max_targets distinct genes per drug, dealt from shuffled rounds of all genes
    # so that, given enough drugs, every gene is some drug's target (interventions on every
    # gene orient every edge of the graph). Hill parameters per (drug, gene).
    targets = np.zeros((n_drugs, d), dtype=bool)
    deck: list[int] = []
    for i in range(n_drugs):
        for _ in range(int(rng.integers(1, max_targets + 1))):
            if not deck:
                deck = list(rng.permutation(d))
            pick = next((g for g in deck if not targets[i, g]), None)
            if pick is not None:
                deck.remove(pick)
                targets[i, pick] = True
    emax = rng.choice([-1.0, 1.0], (n_drugs, d)) * rng.uniform(1.0, 2.0, (n_drugs, d))
    lo, hi = np.log(ec50_range[0]), np.log(ec50_range[1])
    ec50 = np.exp(rng.uniform(lo, hi, (n_drugs, d)))
    hill = rng.uniform(1.0, 2.5, (n_drugs, d))
    genes = tuple(f"G{j:02d}" for j in range(d))
    truth = ScreenTruth(genes, drugs, {k: TOY_DRUGS[k] for k in drugs}, doses, "nM",
                        tuple(cell_types), adjacency, weights, bias, noise_scale, targets,
                        emax, ec50, hill)

    # Cells: controls, then every (drug, dose), for each cell type.
    rows = []  # (cell_type index, drug index or -1, dose, count)
    for t in range(n_ct):
        rows.append((t, -1, 0.0, n_control))
        rows += [(t, i, c, n_cells) for i in range(n_drugs) for c in doses]
    ct_idx = np.concatenate([np.full(n, t) for t, _, _, n in rows])
    drug_idx = np.concatenate([np.full(n, i) for _, i, _, n in rows])
    dose = np.concatenate([np.full(n, c) for _, _, c, n in rows])
    n_total = ct_idx.size
    shift = np.zeros((n_total, d))
    for t, i, c, _ in rows:
        if i >= 0:
            shift[(drug_idx == i) & (dose == c) & (ct_idx == t)] = truth.shift(drugs[i], c)
    exo = bias[ct_idx] + shift + noise_scale * rng.normal(size=(n_total, d))
    log_expr = np.linalg.solve((np.eye(d) - weights).T, exo.T).T  # (n_total, d)

    # Background genes fill the rest of the library so that perturbing the planted genes
    # barely changes library totals (normalisation then preserves the planted log scale).
    planted_share = np.exp(mu).sum(1).max()
    bg_mu = rng.uniform(0.5, 1.5, n_background_genes)
    bg_mu = np.log(bg_mu / bg_mu.sum() * max(1e4 - planted_share, 1e3))
    bg_expr = bg_mu + 0.05 * rng.normal(size=(n_total, n_background_genes))
    rate = np.exp(np.concatenate([log_expr, bg_expr], axis=1)) / 1e4
    lib = library_size * np.exp(0.2 * rng.normal(size=(n_total, 1)))
    counts = rng.poisson(rate * lib).astype(np.float32)

    is_control = drug_idx < 0
    names = np.where(is_control, CONTROL_NAME, np.asarray(drugs, dtype=object)[
        np.maximum(drug_idx, 0)])
    obs = pd.DataFrame({
        "product_name": pd.Categorical(names),
        "dose": dose,
        "cell_type": pd.Categorical(np.asarray(cell_types, dtype=object)[ct_idx]),
        "SMILES": [CONTROL_SMILES if c else TOY_DRUGS[n]
                   for c, n in zip(is_control, names, strict=True)],
        "vehicle": is_control,
    }, index=[f"cell{i:05d}" for i in range(n_total)])
    var = pd.DataFrame(index=[*genes, *(f"BG{j:03d}" for j in range(n_background_genes))])
    adata = ad.AnnData(X=sparse.csr_matrix(counts), obs=obs, var=var)
    return adata, truth


__all__ = [
    "CONTROL_NAME",
    "SCIPLEX3",
    "ScreenSchema",
    "ScreenTruth",
    "drug_features",
    "drug_smiles",
    "toy_screen",
]
