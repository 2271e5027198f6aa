"""Expression values of an AnnData screen, for `gim_ppl.datasets.anndata`: which values are
read (`adata.X` or a layer), what they look like (raw counts, non-integer counts,
log-normalised values, values with negatives: `normalize="auto"|"yes"|"no"`), log1p
normalisation to counts per 10⁴, and the choice of genes (named, or the most variable).

`read_expression` returns the dense expression of the kept cells and the facts of
`AnnDataInfo`, which says what was detected and done, as notes for a user (in Python
arguments or in the flags of `gim-ppl fit`) and as a dict for a run record. `listed` is the
short list shown in the messages of both modules.

anndata, scanpy and scipy are imported inside the functions (`pip install "gim_ppl[screen]"`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections import Counter

import numpy as np

from gim_ppl.errors import ArgumentError, ArgumentKeyError, ArgumentTypeError
from gim_ppl.extras import require

_MAX_SHOWN = 10

# Log-normalised expression (log1p of counts per 10⁴, or per 10⁶) stays below ~14; counts
# corrected for ambient RNA are non-integer but reach far higher.
LOG_SCALE_MAX = 15.0

NORMALIZE_CHOICES = ("auto", "yes", "no")


@dataclasses.dataclass(frozen=True)
class AnnDataInfo:
    """What `from_anndata_with_info` did to the expression values, as facts.

    source: where the values came from ("adata.X" or "adata.layers['counts']").
    detected: what the values of the genes used look like: "raw counts", "non-integer
        counts", "log-normalised values" or "values with negatives".
    evidence: why, in words (e.g. "every value of the 12 genes used is a non-negative
        integer").
    normalize: what was asked: "auto", "yes" or "no".
    normalized: whether each cell was scaled to `target_sum` counts and log1p-transformed.
    target_sum: the counts per cell after normalising.
    genes: how the genes were chosen, in words.
    n_genes_in_file, n_genes_used: numbers of genes in the file and used.
    n_top_genes: the number of most variable genes asked for, when genes were not named.
    unused_nonfinite_genes: genes with NaN or infinite values among the selected cells that
        are not used (they count as 0 in the library sizes when normalising).
    cell_type_key, pooled_cell_types: the cell types pooled into one model when no cell
        type was chosen and `obs[cell_type_key]` holds several (else empty).
    """

    source: str
    detected: str
    evidence: str
    normalize: str
    normalized: bool
    target_sum: float
    genes: str
    n_genes_in_file: int
    n_genes_used: int
    n_top_genes: int | None = None
    unused_nonfinite_genes: tuple = ()
    cell_type_key: str = "cell_type"
    pooled_cell_types: tuple = ()

    def notes(self, cli: bool = False) -> list[str]:
        """The notes worth telling a user, naming Python arguments (`cli=False`) or the
        flags of `gim-ppl fit` (`cli=True`)."""
        def arg(name, value):
            return f"--{name.replace('_', '-')} {value}" if cli else f"{name}={value!r}"

        out = []
        if self.pooled_cell_types:
            out.append(
                f"obs[{self.cell_type_key!r}] holds {len(self.pooled_cell_types)} cell types "
                f"{listed(self.pooled_cell_types)}; they are pooled into one model. Pass "
                f"{'--cell-type NAME' if cli else 'cell_type=...'} to fit one cell type.")
        if self.normalize == "auto":
            if self.normalized:
                out.append(
                    f"{self.source} holds {self.detected} ({self.evidence}): normalised each "
                    f"cell to {self.target_sum:g} counts and applied log1p. To use the values "
                    f"as they are, pass {arg('normalize', 'no')}.")
            else:
                out.append(
                    f"{self.source} holds {self.detected} ({self.evidence}): used as they "
                    f"are, not normalised. If they are counts, pass {arg('normalize', 'yes')}.")
        if self.unused_nonfinite_genes:
            out.append(
                f"genes not used hold NaN or infinite values: "
                f"{listed(self.unused_nonfinite_genes)}"
                + ("; they count as 0 in each cell's library size" if self.normalized else ""))
        if self.n_top_genes is not None and self.n_genes_used < self.n_top_genes:
            out.append(
                f"{self.source} has {self.n_genes_used} usable genes, fewer than "
                f"{arg('n_top_genes', self.n_top_genes)}: all {self.n_genes_used} are used.")
        return out

    def as_dict(self) -> dict:
        """A JSON-ready dict of the fields."""
        out = dataclasses.asdict(self)
        out["unused_nonfinite_genes"] = list(self.unused_nonfinite_genes)
        out["pooled_cell_types"] = list(self.pooled_cell_types)
        return out


def normalize_choice(normalize) -> str:
    """"auto" | "yes" | "no" from the accepted spellings (None and booleans included)."""
    if normalize is None:
        return "auto"
    if isinstance(normalize, (bool, np.bool_)):
        return "yes" if normalize else "no"
    if normalize in NORMALIZE_CHOICES:
        return str(normalize)
    raise ArgumentError(f"normalize must be 'auto', 'yes' or 'no' (or None, True, False), got "
                        f"{normalize!r}", argument="normalize")


def listed(values) -> str:
    """`values` as a short list for a message: the first ten, then how many in all."""
    values = [str(v) for v in values]
    more = f", … ({len(values)} in all)" if len(values) > _MAX_SHOWN else ""
    return "[" + ", ".join(repr(v) for v in values[:_MAX_SHOWN]) + more + "]"


def _describe_values(values: np.ndarray, what: str) -> tuple[str, str, bool]:
    """`(detected, evidence, counts)` for the finite expression values of `what` (e.g. "the
    12 genes used")."""
    if values.size == 0 or not np.any(values):
        return "no expression", f"every value of {what} is 0", False
    low, high = float(values.min()), float(values.max())
    if low < 0:
        return ("values with negatives",
                f"{what} have values down to {low:.3g}, so they are scaled or centred, not "
                "counts", False)
    if np.all(values == np.round(values)):
        return ("raw counts", f"every value of {what} is a non-negative integer, up to "
                f"{high:.4g}", True)
    if high > LOG_SCALE_MAX:
        return ("non-integer counts",
                f"the values of {what} are non-negative and reach {high:.4g}, far above the "
                f"{LOG_SCALE_MAX:g} that log-normalised values stay below, but are not whole "
                "numbers, as after ambient-RNA correction", True)
    return ("log-normalised values",
            f"the values of {what} are non-negative, not whole numbers, and at most "
            f"{high:.3g}", False)


def _normalise_log1p(mat, target_sum: float):
    """`log1p(target_sum · x / rowsum)` per cell, a new matrix; rows with no counts stay 0,
    and non-finite values count as 0 in the row sums (and stay non-finite)."""
    from scipy import sparse

    if sparse.issparse(mat):
        mat = sparse.csr_matrix(mat, dtype=np.float64, copy=True)
        finite = np.where(np.isfinite(mat.data), mat.data, 0.0)
        totals = np.asarray(sparse.csr_matrix((finite, mat.indices, mat.indptr),
                                              shape=mat.shape).sum(axis=1)).ravel()
        scale = np.where(totals > 0, target_sum / np.where(totals > 0, totals, 1.0), 0.0)
        mat = sparse.diags(scale) @ mat
        mat.data = np.log1p(mat.data)
        return sparse.csr_matrix(mat)
    x = np.array(mat, dtype=np.float64, copy=True)
    totals = np.where(np.isfinite(x), x, 0.0).sum(axis=1, keepdims=True)
    x *= np.where(totals > 0, target_sum / np.where(totals > 0, totals, 1.0), 0.0)
    return np.log1p(x)


def _nonfinite_columns(mat) -> np.ndarray:
    """`(n_genes,)` number of cells with a NaN or infinite value, per gene."""
    from scipy import sparse

    if sparse.issparse(mat):
        coo = sparse.coo_matrix(mat)
        bad = ~np.isfinite(coo.data)
        return np.bincount(coo.col[bad], minlength=mat.shape[1])
    return (~np.isfinite(np.asarray(mat, dtype=float))).sum(axis=0)


def _column_values(mat, idx: np.ndarray) -> np.ndarray:
    """The stored values of columns `idx` (sparse: the non-zeros), flattened."""
    from scipy import sparse

    sub = mat[:, idx]
    return np.asarray(sub.data if sparse.issparse(sub) else sub, dtype=float).ravel()


def _expression_matrix(adata, layer):
    """`(matrix, source)`: `adata.layers[layer]` (or `adata.X`), sparse or a numpy array,
    and how to name it in messages."""
    from scipy import sparse

    if layer is not None:
        if layer not in adata.layers:
            raise ArgumentKeyError(f"layer={layer!r} is not in adata.layers; layers: "
                                   f"{listed(adata.layers.keys())}", argument="layer")
        mat, source = adata.layers[layer], f"adata.layers[{layer!r}]"
    else:
        mat, source = adata.X, "adata.X"
    if mat is None:
        raise ArgumentError("adata.X is None: pass layer=... naming the expression layer",
                            argument="layer")
    return (mat if sparse.issparse(mat) else np.asarray(mat)), source


def read_expression(adata, keep: np.ndarray, *, layer, genes, gene_key, n_top_genes,
                    normalize, target_sum) -> tuple[np.ndarray, tuple, dict]:
    """Dense `(n_kept, n_genes)` expression of the kept cells, the gene names, and the facts
    of `AnnDataInfo` about it (source, detected, evidence, normalized, genes,
    n_genes_in_file, unused_nonfinite_genes)."""
    from scipy import sparse

    mat, source = _expression_matrix(adata, layer)
    mat = mat[np.flatnonzero(keep)]  # a new matrix: the caller's AnnData is never touched
    if gene_key is None:
        names = np.asarray(adata.var_names.astype(str))
    else:
        if gene_key not in adata.var.columns:
            raise ArgumentKeyError(f"gene_key={gene_key!r} is not a var column; var has "
                                   f"{listed(adata.var.columns)}", argument="gene_key")
        names = adata.var[gene_key].astype(str).to_numpy()
    n_file = int(mat.shape[1])
    nonfinite = _nonfinite_columns(mat)

    if genes is None:
        n_top = int(n_top_genes)
        if n_top < 1:
            raise ArgumentError(f"n_top_genes must be at least 1, got {n_top_genes}",
                                argument="n_top_genes")
        candidates = np.flatnonzero(nonfinite == 0)
        if candidates.size == 0:
            raise ValueError(f"every gene of {source} holds NaN or infinite values in the "
                             "selected cells; there is no gene to use")
        idx = None  # chosen below, after normalising
        used_for_detection = candidates
    else:
        idx = _named_genes(genes, names, gene_key)
        bad = [(names[i], int(nonfinite[i])) for i in idx if nonfinite[i]]
        if bad:
            named = ", ".join(f"{g!r} ({n} cell{'s' if n != 1 else ''})"
                              for g, n in bad[:_MAX_SHOWN])
            raise ArgumentError(f"{source} holds NaN or infinite values in the genes used: "
                                f"{named}; leave these genes out (genes=...) or fix the file",
                                argument="genes")
        used_for_detection = idx

    n_det = used_for_detection.size
    what = (f"the {n_det} gene{'s' if n_det != 1 else ''} "
            + ("used" if genes is not None else "without NaN"))
    detected, evidence, counts = _describe_values(_column_values(mat, used_for_detection), what)
    normalized = {"auto": counts, "yes": True, "no": False}[normalize]
    if normalized:
        values = mat.data if sparse.issparse(mat) else mat
        values = np.asarray(values, dtype=float)
        if np.any(values[np.isfinite(values)] < 0):
            raise ArgumentError(f"normalize='yes' needs non-negative counts, but {source} has "
                                "negative values (already log-normalised or scaled?)",
                                argument="normalize")
        mat = _normalise_log1p(mat, float(target_sum))

    if idx is None:
        if n_top >= candidates.size:
            idx = candidates
            how = f"all {candidates.size} genes without NaN (no more than n_top_genes={n_top})"
        else:
            anndata = require("anndata")
            sc = require("scanpy")
            tmp = anndata.AnnData(X=mat[:, candidates])
            sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat")
            idx = candidates[np.flatnonzero(tmp.var["highly_variable"].to_numpy())]
            how = f"the {idx.size} most variable of {candidates.size} genes"
    else:
        how = f"{idx.size} genes named"
    x = mat[:, idx]
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    var_names = tuple(str(n) for n in names[idx])
    if len(set(var_names)) != len(var_names):
        raise ValueError(f"the selected genes have duplicate names: "
                         f"{listed(n for n, c in Counter(var_names).items() if c > 1)}")
    used = set(idx.tolist())
    unused_bad = tuple(str(names[i]) for i in np.flatnonzero(nonfinite) if i not in used)
    facts = dict(source=source, detected=detected, evidence=evidence, normalized=normalized,
                 genes=how, n_genes_in_file=n_file, n_genes_used=int(idx.size),
                 n_top_genes=None if genes is not None else n_top,
                 unused_nonfinite_genes=unused_bad)
    return np.asarray(x, dtype=float), var_names, facts



def _named_genes(genes, names: np.ndarray, gene_key) -> np.ndarray:
    """Column indices of the named `genes` (in their order), checked."""
    if isinstance(genes, str):
        raise ArgumentTypeError(f"genes must be a list of gene names, got the string {genes!r}",
                                argument="genes")
    wanted = [str(g) for g in genes]
    if not wanted:
        raise ArgumentError("genes is empty: name at least one gene (or pass genes=None)",
                            argument="genes")
    dups = sorted(g for g, c in Counter(wanted).items() if c > 1)
    if dups:
        raise ArgumentError(f"genes lists some genes twice: {listed(dups)}", argument="genes")
    where: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        where.setdefault(n, []).append(i)
    missing = [g for g in wanted if g not in where]
    if missing:
        source = "adata.var_names" if gene_key is None else f"adata.var[{gene_key!r}]"
        # the closest names first (a typo: ACTb → ACTB), then examples of what there is
        close = {g: difflib.get_close_matches(g, list(where), n=1, cutoff=0.6)
                 for g in missing}
        close = {g: c[0] for g, c in close.items() if c}
        hint = ("; did you mean " + ", ".join(f"{c!r} for {g!r}" for g, c in close.items())
                if close else "")
        raise ArgumentKeyError(f"genes not found in {source}: {listed(missing)}{hint}; it has "
                               f"{len(names)} genes, e.g. {listed(names[:5])}", argument="genes")
    ambiguous = [g for g in wanted if len(where[g]) > 1]
    if ambiguous:
        raise ArgumentError(f"genes match several columns of adata: {listed(ambiguous)}",
                            argument="genes")
    return np.array([where[g][0] for g in wanted], dtype=int)



__all__ = [
    "LOG_SCALE_MAX",
    "NORMALIZE_CHOICES",
    "AnnDataInfo",
    "listed",
    "normalize_choice",
    "read_expression",
]
