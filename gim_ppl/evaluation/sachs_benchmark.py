"""The Sachs benchmark: what a GIM infers on the Sachs et al. (2005) cytometry data, beside
peer implementations run for real and a trivial detector.

Scores (one implementation each, from `gim_ppl.evaluation.metrics`):

- target recovery: AUROC and average precision of (reagent, protein) scores against the
  literature targets (`SachsData.target_labels`), over the reagents that have a measured
  target;
- graph recovery: SHD of the method's graph and AUPRC of its edge scores (off-diagonal)
  against the 18-edge consensus graph (which has one cycle, so SHD ≥ 1 for any DAG).

Methods (`METHODS`):

- `gim_exact`, `gim_relaxed_mc`: `GIM(..., marginal=...)` fitted by `gim_ppl.fit` (MAP) for
  each PRNG key; targets scored by the posterior P(I = 1 | cells) of each reagent's context
  and, as a second read-off, by the expected shift P(I = 1 | cells) · |u| (`gim_*_effect`
  rows); edges by |W|; the graph is `GIM.graph`.
- `ut_igsp`: UT-IGSP (Squires, Wang, Uhler 2020) from `graphical_model_learning` with
  Gaussian CI and invariance tests from `conditional_independence` (`pip install
  "gim_ppl[peers]"`). It returns target *sets*: a (reagent, protein) pair is scored by how
  often the protein is in the reagent's set over the grid `UTIGSP_ALPHAS` × `UTIGSP_ALPHAS`
  of its two significance levels, an edge by how often it is in the DAG; its SHD is that of
  the DAG at α = α_inv = 1e-3.
- `gies`: GIES (package `gies`, Gaussian BIC) with the literature targets given: a graph
  reference only (its "targets" are an input). Its essential graph scores edges 0/1.
- `mean_shift`: |mean of the reagent's cells − reference mean| / reference sd, per protein;
  no graph.

A peer that is not installed or fails keeps its row, with the error as its reason.
"""

from __future__ import annotations

import dataclasses
import random
import time
import traceback
from pathlib import Path

import jax
import numpy as np

from gim_ppl.core.interventions import intervention_shift
from gim_ppl.datasets.sachs_cells import SachsData, sachs
from gim_ppl.evaluation import metrics, report
from gim_ppl.evaluation.methods import EdgeScorer, FittedTargetScorer, GIMMethod
from gim_ppl.extras import require

METHODS = ("gim_exact", "gim_relaxed_mc", "gim_exact_coarsened", "gim_relaxed_mc_coarsened",
           "ut_igsp", "gies", "mean_shift")
#: Significance levels of UT-IGSP's CI and invariance tests; every pair is run once.
UTIGSP_ALPHAS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-12, 1e-16)
UTIGSP_DEFAULT_ALPHA = 1e-3
SCORES = ("target_auroc", "target_ap", "graph_shd", "graph_auprc", "seconds")


@dataclasses.dataclass(frozen=True)
class SachsConfig:
    """What `run_sachs` runs: the data (`sachs(conditions=...)`, log + standardised), the GIMs
    (`steps` Adam steps at `learning_rate`, one fit per key), the α of the `*_coarsened` GIMs
    (`GIM(..., coarsening=α)`) and which methods."""

    conditions: str = "inhibitors"
    steps: int = 10_000
    learning_rate: float = 1e-2
    keys: tuple = (0, 1, 2)
    methods: tuple = METHODS
    coarsening: float = 5.0

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods has unknown names {unknown}; choose from {METHODS}")
        if int(self.steps) < 1 or not self.keys:
            raise ValueError("steps must be >= 1 and keys non-empty")


# --- scores --------------------------------------------------------------------------------


def target_scores(s: SachsData, scores) -> dict:
    """`{target_auroc, target_ap}` of `scores (n_perturbational, n_vars)` (one row per
    reagent, as `s.target_labels()`) against the literature targets, over the reagents with
    a measured target."""
    scores = np.asarray(scores, float)
    labels = s.target_labels()
    if scores.shape != labels.shape:
        raise ValueError(f"scores must have shape {labels.shape} (reagents × proteins), got "
                         f"{scores.shape}")
    keep = s.scored()
    return {"target_auroc": metrics.auroc(labels[keep], scores[keep]),
            "target_ap": metrics.average_precision(labels[keep], scores[keep])}


def graph_scores(s: SachsData, graph, edge_scores) -> dict:
    """`{graph_shd, graph_auprc}`: SHD of `graph (d, d)` bool and AUPRC of `edge_scores (d, d)`
    (off-diagonal) against the consensus graph."""
    off = ~np.eye(s.consensus.shape[0], dtype=bool)
    return {"graph_shd": float(metrics.shd(s.consensus, graph)),
            "graph_auprc": metrics.average_precision(s.consensus[off],
                                                     np.asarray(edge_scores, float)[off])}


def mean_shift_scores(s: SachsData) -> np.ndarray:
    """`(n_perturbational, n_vars)` |mean of each reagent's cells − reference mean| in
    reference sds (the trivial target detector)."""
    moments = s.data.context_moments()
    obs = np.asarray(s.data.observational)
    ref = np.asarray(s.data.context_names) == "cd3cd28"
    if not (ref & obs).any():
        raise ValueError("the data need the observational reference context 'cd3cd28'")
    sd = np.sqrt(np.maximum(moments.var[ref][0], np.finfo(float).tiny))
    return np.abs(moments.mean[~obs] - moments.mean[ref][0]) / sd


# --- methods -------------------------------------------------------------------------------


class SachsGIM(GIMMethod):
    """`GIM(d, p, marginal=marginal, coarsening=coarsening)` fitted by `gim_ppl.fit` (MAP)
    with `optax.adam(learning_rate)`: a `methods.GIMMethod` with the Sachs benchmark's second
    target read-off, `target_effects`."""

    def __init__(self, marginal: str, *, steps: int, learning_rate: float,
                 coarsening: float | None = None):
        super().__init__(steps=steps, learning_rate=learning_rate, marginal=marginal,
                         coarsening=coarsening)

    def target_effects(self) -> np.ndarray:
        """`(n_contexts, n_vars)` P(I = 1 | cells) · |u|, u the Hill shift at the context's
        dose: the expected shift of each variable."""
        heads = self.model.intervention_outputs(self.sites, self.train)
        shift = np.asarray(intervention_shift(heads, self.train.dose))
        return self.fitted_target_scores() * np.abs(shift)


def fit_gim(s: SachsData, marginal: str, *, steps: int, learning_rate: float, key,
            coarsening: float | None = None) -> dict:
    """Fit `SachsGIM(marginal, coarsening=coarsening)` to `s.data` and read off targets and
    edges.

    Returns:
        `{target_prob, target_effect (n_perturbational, d), weights (d, d) |W|, graph (d, d)
        bool, seconds, model, sites, message}`; `target_effect` is P(I = 1 | cells) · |u|, u
        the Hill shift at the context's dose.
    """
    method = SachsGIM(marginal, steps=steps, learning_rate=learning_rate, coarsening=coarsening)
    start = time.perf_counter()
    method.fit(s.data, key=key)
    seconds = time.perf_counter() - start
    pert = s.perturbational
    return {"target_prob": method.fitted_target_scores()[pert],
            "target_effect": method.target_effects()[pert], "weights": method.edge_scores(),
            "graph": method.graph(), "seconds": seconds, "model": method.model,
            "sites": method.sites, "message": method.result.message}


def certain_targets(s: SachsData, probs) -> dict:
    """Per reagent: how many proteins have P(I = 1 | cells) ≥ 0.99 (`certain`), and how many
    of those move by at most one reference sd (`certain_small`, by `mean_shift_scores`)."""
    probs = np.asarray(probs, float)
    small = mean_shift_scores(s) <= 1.0
    return {"certain": (probs >= 0.99).sum(1).tolist(),
            "certain_small": ((probs >= 0.99) & small).sum(1).tolist()}


def _split_cells(s: SachsData) -> tuple[np.ndarray, list[np.ndarray]]:
    """`(observational cells (n_obs, d), [cells of each perturbational context])`."""
    x, ctx = np.asarray(s.data.x, float), np.asarray(s.data.context)
    obs = np.asarray(s.data.observational)
    return x[obs[ctx]], [x[ctx == k] for k in np.flatnonzero(~obs)]


def run_utigsp(s: SachsData, alphas=UTIGSP_ALPHAS, *, seed: int = 0) -> dict:
    """UT-IGSP over the grid `alphas × alphas` (CI level, invariance level).

    Returns:
        `{target_freq (n_perturbational, d), edge_freq (d, d), graph (d, d) bool at α = α_inv =
        1e-3 (or the grid's middle), targets (the sets at that level, protein names),
        seconds}`.
    """
    gml = require("graphical_model_learning")
    ci = require("conditional_independence")
    obs_x, iv = _split_cells(s)
    d = obs_x.shape[1]
    start = time.perf_counter()
    suffstat = ci.partial_correlation_suffstat(obs_x)
    inv_suffstat = ci.gauss_invariance_suffstat(obs_x, iv)
    target_freq, edge_freq = np.zeros((len(iv), d)), np.zeros((d, d))
    default = (UTIGSP_DEFAULT_ALPHA if UTIGSP_DEFAULT_ALPHA in alphas
               else alphas[len(alphas) // 2])
    graph, default_targets = None, None
    for alpha in alphas:
        for alpha_inv in alphas:
            random.seed(seed)  # its restarts draw from Python's global `random` state
            dag, targets = gml.unknown_target_igsp(
                [{"known_interventions": []} for _ in iv], set(range(d)),
                ci.MemoizedCI_Tester(ci.partial_correlation_test, suffstat, alpha=alpha),
                ci.MemoizedInvarianceTester(ci.gauss_invariance_test, inv_suffstat,
                                            alpha=alpha_inv))
            adj = np.zeros((d, d), dtype=bool)
            for i, j in dag.arcs:
                adj[i, j] = True
            edge_freq += adj
            for k, found in enumerate(targets):
                target_freq[k, sorted(int(j) for j in found)] += 1
            if alpha == default and alpha_inv == default:
                graph = adj
                default_targets = [[s.var_names[int(j)] for j in sorted(found)]
                                   for found in targets]
    n = len(alphas) ** 2
    return {"target_freq": target_freq / n, "edge_freq": edge_freq / n, "graph": graph,
            "targets": default_targets, "seconds": time.perf_counter() - start}


def run_gies(s: SachsData) -> dict:
    """GIES with the literature targets given (observational contexts: none).

    Returns `{graph (d, d) bool essential graph (an undirected edge is both directions),
    seconds}`.
    """
    gies = require("gies")
    obs_x, iv = _split_cells(s)
    known = [[s.var_names.index(p) for p in c.targets] for c, o in
             zip(s.conditions, np.asarray(s.data.observational), strict=True) if not o]
    start = time.perf_counter()
    adj, _ = gies.fit_bic([obs_x, *iv], [[], *known])
    return {"graph": np.asarray(adj) != 0, "seconds": time.perf_counter() - start}


class _SachsPeer:
    """A method that reads the cells of the `SachsData` it is built with (a peer needs its
    conditions: GIES their literature targets); `fit(s.data)` runs it."""

    def __init__(self, s: SachsData):
        self.s = s

    def fit(self, data=None, *, key=None, progress: bool = False):
        if data is not None and data is not self.s.data:
            raise ValueError(f"{type(self).__name__} fits the data it was built with")
        start = time.perf_counter()
        self.out = self._run()
        self.seconds = self.out.get("seconds", time.perf_counter() - start)
        return self

    def _rows(self, perturbational_rows) -> np.ndarray:
        """`(n_contexts, n_vars)` from the perturbational contexts' rows (0 elsewhere)."""
        full = np.zeros((self.s.data.n_contexts, self.s.data.n_vars))
        full[self.s.perturbational] = perturbational_rows
        return full


class UTIGSP(_SachsPeer):
    """UT-IGSP over the α grid (`run_utigsp`): target and edge frequencies over the grid,
    its DAG at α = α_inv = 1e-3."""

    def _run(self) -> dict:
        return run_utigsp(self.s)

    def fitted_target_scores(self) -> np.ndarray:
        return self._rows(self.out["target_freq"])

    def edge_scores(self) -> np.ndarray:
        return self.out["edge_freq"]

    def graph(self) -> np.ndarray:
        return self.out["graph"]

    def details(self) -> dict:
        return {"targets_at_1e-3": self.out["targets"], "alphas": list(UTIGSP_ALPHAS)}


class GIES(_SachsPeer):
    """GIES with the literature targets given (`run_gies`): a graph reference only; its
    essential graph scores edges 0/1."""

    note = "literature targets given as input"

    def _run(self) -> dict:
        return run_gies(self.s)

    def edge_scores(self) -> np.ndarray:
        return self.out["graph"]

    def graph(self) -> np.ndarray:
        return self.out["graph"]


class MeanShiftDetector(_SachsPeer):
    """The trivial target detector (`mean_shift_scores`); no graph."""

    def _run(self) -> dict:
        return {"scores": mean_shift_scores(self.s)}

    def fitted_target_scores(self) -> np.ndarray:
        return self._rows(self.out["scores"])


def _gim(marginal: str, coarsened: bool):
    return lambda s, config: SachsGIM(
        marginal, steps=config.steps, learning_rate=config.learning_rate,
        coarsening=config.coarsening if coarsened else None)


#: The Sachs benchmark's methods, name → `make(s, config)`: a GIM (`SachsGIM`, fitted once per
#: key of the config) or a peer (fitted once); what is scored follows what each offers.
REGISTRY = {
    "gim_exact": _gim("exact", False), "gim_relaxed_mc": _gim("relaxed_mc", False),
    "gim_exact_coarsened": _gim("exact", True),
    "gim_relaxed_mc_coarsened": _gim("relaxed_mc", True),
    "ut_igsp": lambda s, config: UTIGSP(s), "gies": lambda s, config: GIES(s),
    "mean_shift": lambda s, config: MeanShiftDetector(s),
}
assert tuple(REGISTRY) == METHODS, "REGISTRY must list METHODS in their order"


# --- the benchmark -------------------------------------------------------------------------


def _failed(method: str, err: BaseException) -> dict:
    last = traceback.format_exception_only(type(err), err)[-1].strip()
    return {"method": method, "error": last}


def _scores(s: SachsData, scores) -> dict:
    """`target_scores` of `(n_contexts, n_vars)` scores, on the perturbational contexts."""
    return target_scores(s, np.asarray(scores)[s.perturbational])


def _gim_rows(s: SachsData, name: str, config: SachsConfig) -> tuple[list, dict]:
    """One fit per key: a row per key for each read-off (P(I = 1 | cells), and its expected
    shift as `{name}_effect`), and the details of the first key's fit."""
    rows, detail = [], None
    for k in config.keys:
        method = REGISTRY[name](s, config)
        start = time.perf_counter()
        method.fit(s.data, key=jax.random.key(k))
        seconds = time.perf_counter() - start
        prob, effect = method.fitted_target_scores(), method.target_effects()
        graph = graph_scores(s, method.graph(), method.edge_scores())
        for scores, label in ((prob, name), (effect, f"{name}_effect")):
            rows.append({"method": label, "key": int(k), **_scores(s, scores), **graph,
                         "seconds": seconds, "message": method.result.message})
        if detail is None:
            prob, effect = prob[s.perturbational], effect[s.perturbational]
            detail = {"certain": certain_targets(s, prob),
                      "per_reagent_prob": per_reagent(s, prob),
                      "per_reagent_effect": per_reagent(s, effect),
                      "target_prob_key0": np.round(prob, 4).tolist()}
    return rows, detail


def _peer_row(s: SachsData, name: str, config: SachsConfig) -> tuple[dict, dict | None]:
    """A peer's row, scored by what it offers (None where it offers no such read-off), and
    its details."""
    method = REGISTRY[name](s, config).fit(s.data)
    row: dict = {"method": name}
    detail = None
    if isinstance(method, FittedTargetScorer):
        scores = method.fitted_target_scores()
        row.update(_scores(s, scores))
        detail = {"per_reagent": per_reagent(s, scores[s.perturbational]),
                  **(method.details() if hasattr(method, "details") else {})}
    else:
        row.update(target_auroc=None, target_ap=None)
    if isinstance(method, EdgeScorer):
        row.update(graph_scores(s, method.graph(), method.edge_scores()))
    else:
        row.update(graph_shd=None, graph_auprc=None)
    row["seconds"] = method.seconds
    if getattr(method, "note", None):
        row["note"] = method.note
    return row, detail


def per_reagent(s: SachsData, scores) -> list[dict]:
    """For each reagent with a literature target: the target's score, its rank among the
    proteins (`[best, worst]`, 1 = top; they differ when other proteins tie with it) and the
    three top-scored proteins — where a method misses, and what it says instead."""
    scores = np.asarray(scores, float)
    labels = s.target_labels()
    reagents = [c for c, o in zip(s.conditions, np.asarray(s.data.observational),
                                  strict=True) if not o]
    out = []
    for k, cond in enumerate(reagents):
        for j in np.flatnonzero(labels[k]):
            # ties: the target shares ranks best..worst with the proteins scored equally
            best = 1 + int(np.sum(scores[k] > scores[k, j]))
            worst = int(np.sum(scores[k] >= scores[k, j]))
            top = np.argsort(-scores[k], kind="stable")[:3]
            out.append({"reagent": cond.reagent, "target": s.var_names[j],
                        "score": float(scores[k, j]), "rank": [best, worst],
                        "top3": [(s.var_names[t], float(scores[k, t])) for t in top]})
    return out


def run_sachs(config: SachsConfig, *, log=print) -> dict:
    """Every method of `config` on the Sachs data; returns `{config, rows, summary, details}`
    (rows: one per method and key, or a method and its error)."""
    s = sachs(conditions=config.conditions)
    rows, details = [], {}
    for method in config.methods:
        log(f"{method} ...")
        try:
            if isinstance(REGISTRY[method](s, config), SachsGIM):
                new, detail = _gim_rows(s, method, config)
                rows += new
            else:
                row, detail = _peer_row(s, method, config)
                rows.append(row)
            if detail is not None:
                details[method] = detail
        except Exception as err:  # a peer that does not install or run keeps its row
            rows.append(_failed(method, err))
            log(f"{method} failed: {rows[-1]['error']}")
    return {"config": dataclasses.asdict(config), "rows": rows, "summary": summarise(rows),
            "details": details}


def summarise(rows) -> dict:
    """`{method: {score: {mean, sd, n}} or {error}}` over the rows of each method (keys; sd
    with ddof 0)."""
    failed = {r["method"]: {"error": r["error"]} for r in rows if "error" in r}
    scored = report.summarise([r for r in rows if "error" not in r], metrics=SCORES, ddof=0)
    return {name: failed.get(name) or scored[name]
            for name in dict.fromkeys(r["method"] for r in rows)}


def markdown_table(summary: dict) -> str:
    """The summary as a Markdown table (mean ± sd over keys where a method has several)."""
    def cells(stats):
        if "error" in stats:
            return [f"not run: {stats['error']}", "", "", "", ""]
        return [report.format_stat(stats["target_auroc"], 3),
                report.format_stat(stats["target_ap"], 3),
                report.format_stat(stats["graph_shd"], 1),
                report.format_stat(stats["graph_auprc"], 3),
                report.format_stat(stats["seconds"], 1)]

    return report.markdown_table(
        ["method", "target AUROC", "target AP", "graph SHD", "graph AUPRC", "fit time (s)"],
        ([name, *cells(stats)] for name, stats in summary.items()))


def per_reagent_table(entries: list[dict]) -> str:
    """A `per_reagent` list as a Markdown table."""
    def rank(e):
        best, worst = e["rank"]
        return str(best) if best == worst else f"{best}–{worst} (tied)"

    return report.markdown_table(
        ["reagent", "literature target", "score", "rank (of 11)", "top 3"],
        ([e["reagent"], e["target"], f"{e['score']:.2f}", rank(e),
          ", ".join(f"{n} {v:.2f}" for n, v in e["top3"])] for e in entries))


def sachs_markdown(results: dict, *, provenance: dict) -> str:
    """The tables of a `run_sachs` result: the command, the machine, the score table and, per
    method, how each reagent's literature target ranks (`provenance`: command, commit,
    machine)."""
    cfg, summary = results["config"], results["summary"]
    parts = [
        f"Command: `{provenance.get('command')}`  \nMachine: {provenance.get('machine')}.  \n"
        f"Commit: {provenance.get('commit')}.  \nData: `sachs(conditions="
        f"{cfg['conditions']!r})`, log, standardised by the reference; GIMs: {cfg['steps']} "
        f"Adam steps at lr {cfg['learning_rate']}, keys {list(cfg['keys'])} (mean ± sd over "
        f"keys), `*_coarsened`: `coarsening={cfg.get('coarsening')}`; UT-IGSP grid α, "
        f"α_inv ∈ {list(UTIGSP_ALPHAS)}.",
        "", markdown_table(summary),
    ]
    certain = [f"{m}: {d['certain']['certain']} (of which ≤ 1 sd: "
               f"{d['certain']['certain_small']})"
               for m, d in results["details"].items() if "certain" in d]
    if certain:
        parts += ["", "Proteins at P(I = 1 | cells) ≥ 0.99 per reagent (key 0; reagents in "
                  "the order of the tables below): " + "; ".join(certain) + "."]
    for method, detail in results["details"].items():
        for field, what in (("per_reagent", ""), ("per_reagent_prob", " — P(I = 1 | cells)"),
                            ("per_reagent_effect", " — P(I = 1 | cells) · |u|")):
            if field in detail:
                key = " (key 0)" if method.startswith("gim_") else ""
                parts += ["", f"**{method}{what}{key}**: where each literature target ranks",
                          "", per_reagent_table(detail[field])]
    if "ut_igsp" in results["details"]:
        found = results["details"]["ut_igsp"]["targets_at_1e-3"]
        parts += ["", "UT-IGSP target sets at α = α_inv = 1e-3: " + "; ".join(
            f"{c}: {{{', '.join(t)}}}" for c, t in zip(
                _reagent_names(cfg), found, strict=False)) + "."]
    return "\n".join(parts) + "\n"


def _reagent_names(cfg: dict) -> list[str]:
    s = sachs(conditions=cfg["conditions"])
    return [c.reagent for c, o in zip(s.conditions, np.asarray(s.data.observational),
                                      strict=True) if not o]


def write_sachs(results: dict, out_dir, *, provenance: dict) -> tuple[Path, Path]:
    """`sachs.json` (`results` with `provenance`: command, commit, machine) and `sachs.md`
    (the tables) in `out_dir` (created)."""
    md = ("# GIM on the Sachs et al. (2005) data\n\n"
          + sachs_markdown(results, provenance=provenance))
    return report.write_report(out_dir, "sachs", results, md, provenance=provenance)


__all__ = ["GIES", "METHODS", "REGISTRY", "UTIGSP", "UTIGSP_ALPHAS", "MeanShiftDetector",
           "SachsConfig", "SachsGIM", "certain_targets", "fit_gim",
           "graph_scores", "markdown_table", "mean_shift_scores", "per_reagent",
           "per_reagent_table",
           "run_gies", "run_sachs", "run_utigsp", "sachs_markdown", "summarise",
           "target_scores", "write_sachs"]
