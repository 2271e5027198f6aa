import dataclasses
import hashlib
import importlib.util
import json
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from gim_ppl.cli import main
from gim_ppl.core.graph import find_cycle, is_dag
from gim_ppl.datasets import sachs
from gim_ppl.datasets.sachs_cells import (
    CONDITION_SETS,
    CONDITIONS,
    PROTEINS,
    SHA256,
    consensus_graph,
    load_raw,
)
from gim_ppl.evaluation import sachs_benchmark as bench


def test_vendored_files_match_their_checksums():
    folder = resources.files("gim_ppl.datasets").joinpath("data", "sachs")
    for name, digest in SHA256.items():
        assert hashlib.sha256(folder.joinpath(name).read_bytes()).hexdigest() == digest
    assert "sha256" in folder.joinpath("PROVENANCE.md").read_text()


def test_raw_file_has_the_nine_conditions_in_file_order():
    x, condition = load_raw()
    assert x.shape == (7466, 11) and (x >= 1.0).all()
    sizes = [853, 902, 911, 723, 810, 799, 848, 913, 707]
    assert sum(sizes) == 7466
    np.testing.assert_array_equal(np.bincount(condition), sizes)
    assert [c.n_cells for c in CONDITIONS] == sizes
    assert np.all(np.diff(condition) >= 0)  # blocks, in file order


def test_condition_boundaries_are_change_points_of_the_data():
    """The reconstruction of the condition labels: every boundary but the mild ICAM-2 one is
    within 2 rows of a local maximum of a windowed mean-shift scan."""
    x, condition = load_raw()
    z = np.log(x)
    z = (z - z.mean(0)) / z.std(0)
    w = 60
    cs = np.vstack([np.zeros(11), np.cumsum(z, 0)])
    t = np.arange(w, len(z) - w)
    stat = np.linalg.norm((cs[t] - cs[t - w]) / w - (cs[t + w] - cs[t]) / w, axis=1)
    boundaries = np.flatnonzero(np.diff(condition)) + 1
    for b in boundaries[1:]:  # 853 (ICAM-2) is not a visible change
        near = (t >= b - 100) & (t <= b + 100)
        peak = t[near][np.argmax(stat[near])]
        assert abs(peak - b) <= 2 and stat[near].max() > 1.5


def test_consensus_graph_has_18_edges_and_one_cycle():
    """cdt's consensus graph is not a DAG: it holds the loop plcg → PIP2 → PIP3 → plcg (a DAG
    learner scores SHD ≥ 1 against it); without PIP3 → plcg it is acyclic."""
    adj = consensus_graph()
    assert adj.shape == (11, 11) and adj.dtype == bool
    assert adj.sum() == 18 and not np.diag(adj).any()
    assert not is_dag(adj)
    assert set(np.asarray(PROTEINS)[find_cycle(adj)]) == {"plcg", "PIP2", "PIP3"}
    cut = adj.copy()
    cut[PROTEINS.index("PIP3"), PROTEINS.index("plcg")] = False
    assert is_dag(cut)
    i, j = PROTEINS.index("praf"), PROTEINS.index("pmek")
    assert adj[i, j] and not adj[j, i]


def test_default_is_reference_plus_five_inhibitors():
    s = sachs()
    d = s.data
    assert d.context_names == ("cd3cd28", "akt_inhibitor", "g06976", "psitectorigenin",
                               "u0126", "ly294002")
    np.testing.assert_array_equal(d.cells_per_context(), [853, 911, 723, 810, 799, 848])
    assert d.var_names == PROTEINS and d.n_cells == 4944
    np.testing.assert_array_equal(np.asarray(d.observational), [1, 0, 0, 0, 0, 0])
    assert np.asarray(d.features).shape == (6, 5) and d.feature_names == d.context_names[1:]
    np.testing.assert_array_equal(np.asarray(d.features)[1:], np.eye(5))
    np.testing.assert_array_equal(np.asarray(d.dose), [0, 1, 1, 1, 1, 1])
    # log + standardised by the reference: its cells have mean 0 and sd 1 per protein
    ref = np.asarray(d.x)[np.asarray(d.context) == 0]
    np.testing.assert_allclose(ref.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ref.std(0), 1.0, atol=1e-4)
    assert s.targets.shape == (6, 11) and not s.targets[0].any()
    assert s.target_labels().sum() == 5 and s.scored().all()
    named = {c.name: [PROTEINS[j] for j in np.flatnonzero(s.targets[k])]
             for k, c in enumerate(s.conditions)}
    assert named["u0126"] == ["pmek"] and named["psitectorigenin"] == ["PIP2"]
    assert all(c.sources for c in s.conditions)


def test_condition_sets_and_custom_lists():
    igsp = sachs(conditions="igsp").data
    assert igsp.n_cells == 5846 and np.asarray(igsp.observational).sum() == 2
    everything = sachs(conditions="all")
    assert everything.data.n_cells == 7466 and everything.data.n_features == 8
    assert not everything.scored()[everything.data.feature_names.index("icam2")]
    assert {"pma", "b2camp"} <= set(everything.data.feature_names)
    assert not next(c for c in everything.conditions if c.name == "pma").adds_to_reference
    custom = sachs(conditions=["u0126", "cd3cd28"]).data  # file order, whatever given
    assert custom.context_names == ("cd3cd28", "u0126") and custom.n_features == 1
    assert set(CONDITION_SETS) == {"inhibitors", "igsp", "all"}


def test_transforms():
    raw = sachs(log=False, standardize=False)
    x, _ = load_raw()
    np.testing.assert_allclose(np.asarray(raw.data.x)[:853], x[:853], rtol=1e-6)
    logged = sachs(standardize=False)
    np.testing.assert_allclose(np.asarray(logged.data.x)[:853], np.log(x[:853]), atol=1e-5)
    assert "log" in logged.transform and "not standardised" in logged.transform
    std = sachs()
    np.testing.assert_allclose(std.center, np.log(x[:853]).mean(0))


def test_notes_match_the_data():
    """The quantitative statements in `Condition.note` hold for the vendored data."""
    s = sachs(conditions="all")
    shift = s.data.context_means()  # reference sds, reference at 0
    names, p = s.data.context_names, PROTEINS.index
    assert (np.abs(shift[names.index("g06976")]) > 1.5).sum() == 10
    assert shift[names.index("u0126"), p("pmek")] > 4 and shift[names.index("u0126"),
                                                                p("p44/42")] < -1.5
    assert 0.2 < shift[names.index("akt_inhibitor"), p("pakts473")] < 0.4
    assert abs(shift[names.index("ly294002"), p("PIP3")]) < 0.3
    assert 0.1 < shift[names.index("pma"), p("PKC")] < 0.3
    assert abs(shift[names.index("b2camp"), p("PKA")]) < 0.1
    assert shift[names.index("b2camp"), p("pmek")] < -4


@pytest.mark.parametrize("kwargs, match", [
    (dict(conditions="everything"), "conditions must be one of"),
    (dict(conditions=["u0126"]), "must include the reference"),
    (dict(conditions=["cd3cd28"]), "at least one other"),
    (dict(conditions=["cd3cd28", "aspirin"]), "unknown names"),
    (dict(conditions=["cd3cd28", "pma", "pma"]), "repeated"),
    (dict(log="yes"), "log must be True or False"),
    (dict(standardize=1), "standardize must be True or False"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sachs(**kwargs)


# --- the benchmark module (gim_ppl.evaluation.sachs_benchmark) -------------------------


def test_mean_shift_scores_are_standardised_mean_shifts():
    s = sachs(standardize=False)
    x, ctx = np.asarray(s.data.x, float), np.asarray(s.data.context)
    ref = x[ctx == 0]
    expected = np.abs(x[ctx == 4].mean(0) - ref.mean(0)) / ref.std(0)
    np.testing.assert_allclose(bench.mean_shift_scores(s)[3], expected, rtol=1e-5)
    # standardising first changes nothing
    np.testing.assert_allclose(bench.mean_shift_scores(sachs()), bench.mean_shift_scores(s),
                               rtol=1e-4)


def test_scores_against_the_literature_and_the_consensus():
    s = sachs()
    perfect = s.target_labels().astype(float)
    assert bench.target_scores(s, perfect) == {"target_auroc": 1.0, "target_ap": 1.0}
    with pytest.raises(ValueError, match="reagents × proteins"):
        bench.target_scores(s, perfect[:3])
    g = bench.graph_scores(s, s.consensus, s.consensus.astype(float))
    assert g == {"graph_shd": 0.0, "graph_auprc": 1.0}
    reversed_graph = bench.graph_scores(s, s.consensus.T, s.consensus.T.astype(float))
    assert reversed_graph["graph_shd"] == 18.0


def test_per_reagent_ranks_report_ties():
    s = sachs()
    scores = np.zeros(s.target_labels().shape)
    scores[0] = 1.0  # the AKT inhibitor's target ties with every protein
    scores[3, s.var_names.index("pmek")] = 2.0  # U0126: pmek on top
    rows = {r["reagent"]: r for r in bench.per_reagent(s, scores)}
    assert rows["AKT inhibitor"]["rank"] == [1, 11]
    assert rows["U0126"]["rank"] == [1, 1] and rows["U0126"]["top3"][0][0] == "pmek"
    assert "(tied)" in bench.per_reagent_table(list(rows.values()))


def test_certain_targets_count_saturated_proteins_and_the_small_shifts_among_them():
    s = sachs()
    shift = bench.mean_shift_scores(s)
    probs = np.zeros(shift.shape)
    probs[1] = 1.0  # every protein certain for G06976
    out = bench.certain_targets(s, probs)
    assert out["certain"] == [0, 11, 0, 0, 0]
    assert out["certain_small"] == [0, int((shift[1] <= 1.0).sum()), 0, 0, 0]
    assert 0 < out["certain_small"][1] < 11  # G06976 moves most proteins > 1 sd, not all


def test_summary_keeps_failed_methods_with_their_reason():
    rows = [{"method": "gim_exact", "key": k, "target_auroc": 0.5 + 0.1 * k, "target_ap": 0.2,
             "graph_shd": 10.0, "graph_auprc": 0.4, "seconds": 1.0} for k in (0, 1)]
    rows.append({"method": "ut_igsp", "error": "ImportError: no module"})
    summary = bench.summarise(rows)
    assert summary["gim_exact"]["target_auroc"]["mean"] == pytest.approx(0.55)
    assert summary["gim_exact"]["target_auroc"]["n"] == 2
    assert summary["gim_exact"]["target_auroc"]["sd"] == pytest.approx(0.05)  # ddof 0
    table = bench.markdown_table(summary)
    assert "not run: ImportError: no module" in table and "0.550 ± 0.050" in table
    assert "| ut_igsp | not run: ImportError: no module | | | | |" in table
    assert "NOT met" not in sachs_page().goal_check(summary)  # nothing to compare with


def test_goal_check_compares_the_best_gim_with_peers_and_detector():
    def stat(v):
        return {"mean": v, "sd": 0.0, "n": 1}

    summary = {"gim_exact": {"target_auroc": stat(0.8), "graph_auprc": stat(0.4)},
               "gim_exact_effect": {"target_auroc": stat(0.99), "graph_auprc": stat(0.9)},
               "ut_igsp": {"target_auroc": stat(0.7), "graph_auprc": stat(0.5)},
               "mean_shift": {"target_auroc": stat(0.75), "graph_auprc": None}}
    check = sachs_page().goal_check(summary)
    assert "target AUROC 0.800" in check and "→ met;" in check  # the _effect row is no GIM
    assert "graph AUPRC 0.400" in check and check.endswith("→ NOT met.")


def test_config_rejects_unknown_methods():
    with pytest.raises(ValueError, match="unknown names"):
        bench.SachsConfig(methods=("gim_exact", "pc"))


def test_cli_writes_json_and_the_page_script_keeps_prose_around_the_tables(
        tmp_path, monkeypatch):
    def missing(module):
        raise ImportError(f"{module} is needed for this feature: pip install "
                          '"gim_ppl[peers]"')

    monkeypatch.setattr(bench, "require", missing)  # as without the [peers] extra
    rc = main(["bench", "sachs", "--methods", "mean_shift,ut_igsp,gies", "--out",
               str(tmp_path / "out")])
    assert rc == 0
    results = json.loads((tmp_path / "out" / "sachs.json").read_text())
    assert results["command"].startswith("gim-ppl bench sachs --methods")
    assert {"commit", "machine"} <= set(results)
    by_method = {r["method"]: r for r in results["rows"]}
    assert by_method["mean_shift"]["target_auroc"] > 0.5
    assert "gim_ppl[peers]" in by_method["ut_igsp"]["error"]
    assert "| mean_shift |" in (tmp_path / "out" / "sachs.md").read_text()
    # the docs page is spliced by dev/sachs_page.py, outside the package
    script = sachs_page()
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nprose before\n\n{script.BEGIN}\nold\n{script.END}\n\n"
                    "prose after\n")
    assert script.main([str(tmp_path / "out" / "sachs.json"), "--page", str(page)]) == 0
    md = page.read_text()
    assert "prose before" in md and "prose after" in md and "old" not in md
    assert "| mean_shift |" in md and "not run: ImportError" in md
    assert "Goal check: no GIM row." in md and md.count(script.BEGIN) == 1


def sachs_page():
    """dev/sachs_page.py as a module."""
    root = next(d for d in Path(__file__).resolve().parents if (d / "benchmarks").is_dir())
    path = root / "dev" / "sachs_page.py"
    spec = importlib.util.spec_from_file_location("sachs_page", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_utigsp_runs_when_installed():
    pytest.importorskip("graphical_model_learning")
    out = bench.run_utigsp(sachs(), alphas=(1e-3, 1e-8))
    assert out["target_freq"].shape == (5, 11) and out["edge_freq"].shape == (11, 11)
    assert ((out["target_freq"] >= 0) & (out["target_freq"] <= 1)).all()
    assert out["graph"].dtype == bool and len(out["targets"]) == 5


def test_run_gies_recovers_a_planted_dag_with_its_known_targets():
    """`run_gies` hands GIES the observational cells and each condition's cells with its
    literature targets. On cells drawn from a planted linear SEM over the 11 proteins (a
    chain-like DAG, weights ±0.8, unit noise) where each condition replaces its targets by
    N(2, 1) (the hard interventions GIES assumes), with the Sachs conditions' cell counts,
    the essential graph GIES returns must have the planted skeleton, and every planted
    edge into or out of a target of some condition must be oriented as planted (the
    interventions identify it). Cells given to the wrong condition, or targets shifted by
    one index, break both."""
    pytest.importorskip("gies")
    s = sachs()
    d = len(s.var_names)
    rng = np.random.default_rng(0)
    w = np.zeros((d, d))
    for j in range(1, d):  # a DAG in index order: each node one or two parents
        for i in rng.choice(j, size=min(j, 1 + (j % 2)), replace=False):
            w[i, j] = rng.choice([-0.8, 0.8])
    ctx = np.asarray(s.data.context)
    x = np.zeros((ctx.size, d))
    for k, cond in enumerate(s.conditions):
        rows = np.flatnonzero(ctx == k)
        hit = [s.var_names.index(t) for t in cond.targets] \
            if not np.asarray(s.data.observational)[k] else []
        e = rng.normal(size=(rows.size, d))
        for j in range(d):  # ancestral sampling
            x[rows, j] = rng.normal(2.0, 1.0, rows.size) if j in hit else \
                x[rows] @ w[:, j] + e[:, j]
    planted = dataclasses.replace(s, data=s.data.replace(x=jnp.asarray(x, jnp.float32)))
    graph = bench.run_gies(planted)["graph"]
    truth = w != 0
    np.testing.assert_array_equal(graph | graph.T, truth | truth.T)  # the skeleton
    targets = {s.var_names.index(t) for c in s.conditions for t in c.targets}
    oriented = [(i, j) for i, j in zip(*np.nonzero(truth), strict=True)
                if i in targets or j in targets]
    assert oriented  # the check has edges to look at
    for i, j in oriented:
        assert graph[i, j] and not graph[j, i], (s.var_names[i], s.var_names[j])


def test_registry_methods_offer_the_read_offs_they_are_scored_by():
    from gim_ppl.evaluation import methods

    s = sachs()
    built = {name: make(s, bench.SachsConfig()) for name, make in bench.REGISTRY.items()}
    assert tuple(built) == bench.METHODS
    assert all(isinstance(m, methods.Method) for m in built.values())
    targets = {n for n, m in built.items() if isinstance(m, methods.FittedTargetScorer)}
    edges = {n for n, m in built.items() if isinstance(m, methods.EdgeScorer)}
    assert targets == set(bench.METHODS) - {"gies"}  # GIES is given the targets
    assert edges == set(bench.METHODS) - {"mean_shift"}
    detector = built["mean_shift"].fit(s.data)
    scores = detector.fitted_target_scores()
    assert scores.shape == (s.data.n_contexts, 11)
    np.testing.assert_array_equal(scores[s.perturbational], bench.mean_shift_scores(s))
    assert not scores[~s.perturbational].any()
    with pytest.raises(ValueError, match="fits the data it was built with"):
        built["gies"].fit(sachs(conditions="all").data)
