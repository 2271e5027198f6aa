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
import optax

from gim_ppl.core.interventions import intervention_shift
from gim_ppl.datasets.sachs import SachsData, sachs
from gim_ppl.evaluation import metrics, report
from gim_ppl.extras import require
from gim_ppl.inference import fit
from gim_ppl.model import GIM

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


def fit_gim(s: SachsData, marginal: str, *, steps: int, learning_rate: float, key,
            coarsening: float | None = None) -> dict:
    """Fit `GIM(d, p, marginal=marginal, coarsening=coarsening)` to `s.data` by
    `gim_ppl.fit` and read off targets and edges.

    Returns:
        `{target_prob, target_effect (n_perturbational, d), weights (d, d) |W|, graph (d, d)
        bool, seconds, model, sites}`; `target_effect` is P(I = 1 | cells) · |u|, u the Hill
        shift at the context's dose.
    """
    data = s.data
    model = GIM(data.n_vars, data.n_features, marginal=marginal, coarsening=coarsening)
    start = time.perf_counter()
    result = fit(model, data, steps=steps, key=key, optimizer=optax.adam(learning_rate),
                 progress=False)
    seconds = time.perf_counter() - start
    pert = s.perturbational
    prob = np.asarray(model.posterior_targets(result.sites, data))[pert]
    heads = model.intervention_outputs(result.sites, data)
    shift = np.asarray(intervention_shift(heads, data.dose))[pert]
    return {"target_prob": prob, "target_effect": prob * np.abs(shift),
            "weights": np.abs(np.asarray(model.edge_weights(result.sites))),
            "graph": np.asarray(model.graph(result.sites)), "seconds": seconds,
            "model": model, "sites": result.sites, "message": result.message}


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


# --- the benchmark -------------------------------------------------------------------------


def _failed(method: str, err: BaseException) -> dict:
    last = traceback.format_exception_only(type(err), err)[-1].strip()
    return {"method": method, "error": last}


def _gim_rows(s: SachsData, method: str, config: SachsConfig) -> tuple[list, dict]:
    marginal = method.removeprefix("gim_").removesuffix("_coarsened")
    alpha = config.coarsening if method.endswith("_coarsened") else None
    rows, first = [], None
    for k in config.keys:
        out = fit_gim(s, marginal, steps=config.steps, learning_rate=config.learning_rate,
                      key=jax.random.key(k), coarsening=alpha)
        first = out if first is None else first
        graph = graph_scores(s, out["graph"], out["weights"])
        for read_off, name in (("target_prob", method), ("target_effect", f"{method}_effect")):
            rows.append({"method": name, "key": int(k), **target_scores(s, out[read_off]),
                         **graph, "seconds": out["seconds"], "message": out["message"]})
    return rows, first


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
            if method.startswith("gim_"):
                new, first = _gim_rows(s, method, config)
                rows += new
                details[method] = {
                    "certain": certain_targets(s, first["target_prob"]),
                    "per_reagent_prob": per_reagent(s, first["target_prob"]),
                    "per_reagent_effect": per_reagent(s, first["target_effect"]),
                    "target_prob_key0": np.round(first["target_prob"], 4).tolist()}
            elif method == "ut_igsp":
                out = run_utigsp(s)
                rows.append({"method": method, **target_scores(s, out["target_freq"]),
                             **graph_scores(s, out["graph"], out["edge_freq"]),
                             "seconds": out["seconds"]})
                details[method] = {"per_reagent": per_reagent(s, out["target_freq"]),
                                   "targets_at_1e-3": out["targets"],
                                   "alphas": list(UTIGSP_ALPHAS)}
            elif method == "gies":
                out = run_gies(s)
                rows.append({"method": method, "target_auroc": None, "target_ap": None,
                             **graph_scores(s, out["graph"], out["graph"]),
                             "seconds": out["seconds"],
                             "note": "literature targets given as input"})
            else:
                start = time.perf_counter()
                scores = mean_shift_scores(s)
                rows.append({"method": method, **target_scores(s, scores),
                             "graph_shd": None, "graph_auprc": None,
                             "seconds": time.perf_counter() - start})
                details[method] = {"per_reagent": per_reagent(s, scores)}
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


__all__ = ["METHODS", "UTIGSP_ALPHAS", "SachsConfig", "certain_targets", "fit_gim",
           "graph_scores", "markdown_table", "mean_shift_scores", "per_reagent",
           "per_reagent_table",
           "run_gies", "run_sachs", "run_utigsp", "sachs_markdown", "summarise",
           "target_scores", "write_sachs"]
