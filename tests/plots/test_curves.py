"""`gim_ppl.plots.curves`: the loss curve and the fitted Hill dose-response curves."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from gim_ppl import plots
from gim_ppl.datasets import DoseScale
from tests.plots.figures import by_gid, fake_draws


def _hill(dose, emax, ec50, h):
    dose = np.asarray(dose, float)
    with np.errstate(divide="ignore"):
        act = dose**h / (ec50**h + dose**h)
    return emax * np.where(dose > 0, act, 0.0)


# --- loss -------------------------------------------------------------------------------


def test_loss_curve_from_fit_result_and_array(fitted):
    _, _, result = fitted
    fig, ax = plots.plot_loss(result)
    assert fig.axes == [ax]
    raw, smooth = ax.get_lines()
    np.testing.assert_allclose(raw.get_ydata(), result.losses)
    assert smooth.get_ydata().size == result.losses.size - max(1, result.losses.size // 50) + 1
    assert ax.get_xlabel() == "step" and "loss" in ax.get_ylabel()

    losses = np.r_[1e6, np.linspace(10.0, 1.0, 999)]
    _, ax = plots.plot_loss(losses, window=10, label="MAP")
    low, high = ax.get_ylim()
    assert high < 1e3 and low < 1.0  # the transient is off scale, the tail is not
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MAP"]
    with pytest.raises(ValueError, match="empty"):
        plots.plot_loss([])


# --- dose-response ----------------------------------------------------------------------


def test_dose_response_curves_points_and_truth(fitted):
    bench, model, result = fitted
    data, sites = bench.train, result.sites
    fig, axes = plots.plot_dose_response(
        model, sites, data, ["drug_01", "drug_02"], ["x0", "x2", "x3"],
        true_hill=bench.truth.hill["train"], true_targets=bench.truth.targets["train"])
    assert axes.shape == (2, 3) and len(fig.axes) == 6
    pert = np.asarray(data.perturbation)
    w = np.asarray(sites["weights"]) * (1 - np.eye(4))
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    residual = x - x @ w - np.asarray(sites["bias"])
    for r, g in enumerate((1, 2)):
        k0 = int(np.flatnonzero(pert == g)[0])
        hill = model.hill_parameters(sites, data.subset([k0]))
        for c, j in enumerate((0, 2, 3)):
            a = axes[r, c]
            assert a.get_title().startswith(f"drug_0{g} → x{j}")
            (fit_line,) = by_gid(a.get_lines(), "fit")
            (true_line,) = by_gid(a.get_lines(), "truth")
            dose = fit_line.get_xdata()
            expected = _hill(dose, hill["emax"][0, j], hill["ec50"][0, j], hill["hill"][0, j])
            np.testing.assert_allclose(fit_line.get_ydata(), expected, rtol=1e-4, atol=1e-5)
            h = {k: v[k0, j] for k, v in bench.truth.hill["train"].items()}
            truth = _hill(dose, h["emax"], h["ec50"], h["hill"])
            truth = truth * bench.truth.targets["train"][k0, j]
            np.testing.assert_allclose(true_line.get_ydata(), truth, rtol=1e-4, atol=1e-5)
            assert true_line.get_linestyle() == "--"
            # one point per context of the perturbation: the mean residual of x_j
            (points,) = by_gid(a.get_lines(), "observed")
            rows = np.flatnonzero(pert == g)
            np.testing.assert_allclose(points.get_xdata(), np.asarray(data.dose)[rows])
            means = [residual[ctx == k, j].mean() for k in rows]
            np.testing.assert_allclose(points.get_ydata(), means, rtol=1e-4, atol=1e-5)
            assert not by_gid(a.collections, "band")
            (control,) = by_gid(a.get_lines(), "control")
            assert control.get_xdata()[0] == 0.0
    assert axes[1, 0].get_xlabel() == "dose" and axes[0, 0].get_ylabel() == "x − f(parents)"
    assert "true curve" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_dose_response_band_with_draws_and_default_variables(fitted):
    bench, model, result = fitted
    draws = fake_draws(result.sites)
    _, axes = plots.plot_dose_response(model, draws, bench.train, "drug_03", max_variables=2)
    assert axes.shape == (1, 2)
    prob = model.target_probabilities(draws, bench.train).mean(0)  # read-offs keep draws
    prob = prob[np.asarray(bench.train.perturbation) == 3][0]
    top = sorted(np.argsort(-prob)[:2].tolist())
    assert [a.get_title().split(" → ")[1].split()[0] for a in axes[0]] == [f"x{j}" for j in top]
    for a in axes[0]:
        (band,) = by_gid(a.collections, "band")
        assert isinstance(band, PolyCollection)
        edge = band.get_paths()[0].vertices[:, 1]
        (line,) = by_gid(a.get_lines(), "fit")
        assert edge.min() <= line.get_ydata().min() + 1e-9
        assert line.get_ydata().max() <= edge.max() + 1e-9
        assert edge.max() - edge.min() > 0


def test_dose_response_uses_given_axes_and_checks_arguments(fitted):
    bench, model, result = fitted
    fig, ax = plt.subplots()
    out_fig, axes = plots.plot_dose_response(model, result.sites, bench.train, 0, "x1", ax=ax)
    assert out_fig is fig and axes[0, 0] is ax and ax.get_legend() is not None
    with pytest.raises(ValueError, match="must hold 2 axes"):
        plots.plot_dose_response(model, result.sites, bench.train, 0, ["x0", "x1"], ax=ax)
    with pytest.raises(ValueError, match="unknown perturbation"):
        plots.plot_dose_response(model, result.sites, bench.train, "aspirin")
    with pytest.raises(ValueError, match="no context in data"):  # a test-only drug
        plots.plot_dose_response(model, result.sites, bench.train, "drug_05")
    with pytest.raises(ValueError, match="together"):
        plots.plot_dose_response(model, result.sites, bench.train,
                                 true_hill=bench.truth.hill["train"])


def _expected_pairs(model, sites, data, heldout, top, cut):
    """The dose-response grid's rule, computed here: π or the perturbation-level posterior
    over the fitted contexts ≥ cut, at most `top` per perturbation, ranked by that
    probability × |the Hill curve at the perturbation's highest dose| (closed form)."""
    ids, first = data.perturbation_contexts()
    prior = np.asarray(model.target_probabilities(sites, data.subset(first)))
    fitted = ~np.isin(data.context_names, heldout)
    post = np.asarray(model.posterior_targets(sites, data.subset(fitted), per="perturbation"))
    hill = model.hill_parameters(sites, data.subset(first))
    pert_all, dose = np.asarray(data.perturbation), np.asarray(data.dose)
    pert = pert_all[fitted]
    pairs = []
    for i, g in enumerate(ids):
        best = np.maximum(prior[i], post[pert == g][0])
        size = np.abs(_hill(dose[pert_all == g].max(), hill["emax"][i], hill["ec50"][i],
                            hill["hill"][i]))
        ranked = [j for j in np.argsort(-best * size, kind="stable") if best[j] >= cut]
        pairs += [(g, j) for j in ranked[:top]]
    return pairs


def test_dose_response_grid_shows_likely_targets_with_observed_means(fitted, tmp_path):
    bench, model, result = fitted
    data, sites = bench.train, result.sites
    held = [n for n in data.context_names if n.endswith("@2")]  # each drug's highest dose
    pairs = _expected_pairs(model, sites, data, held, 3, 0.5)
    assert 2 <= len(pairs) < 4 * 3  # the rule keeps some pairs and drops others here
    fig, axes = plots.plot_dose_response_grid(model, sites, data, heldout=held, top=3,
                                              expression_unit="log1p expr.")
    fig.savefig(tmp_path / "dose_response_grid.png", dpi=80)  # renders (Agg)
    assert axes.shape == (len(pairs),)
    ids, first = data.perturbation_contexts()
    prob = model.target_probabilities(sites, data.subset(first))
    hill = model.hill_parameters(sites, data.subset(first))
    pert, dose = np.asarray(data.perturbation), np.asarray(data.dose)
    w = np.asarray(sites["weights"]) * (1 - np.eye(4))
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    residual = x - x @ w - np.asarray(sites["bias"])
    for a, (g, j) in zip(axes, pairs, strict=True):
        i = list(ids).index(g)
        name, gene = data.perturbation_names[g], data.var_names[j]
        assert a.get_title().startswith(f"{name} → {gene}\nπ = {prob[i, j]:.2f}, P(I=1 | cells)")
        assert a.get_xscale() == "log" and a.get_xlabel() == "dose (model units)"
        assert a.get_ylabel() == f"shift of {gene} (log1p expr.)"
        # the curve: solid over the fitted doses (0.5 .. 1), dashed beyond; together the
        # Hill curve at every dose of the grid
        (solid,) = by_gid(a.get_lines(), "fit")
        (dashed,) = by_gid(a.get_lines(), "fit_extrapolated")
        grid = solid.get_xdata()
        inside = np.isfinite(grid)
        assert grid[inside].min() >= 0.5 and grid[inside].max() <= 1.0
        assert dashed.get_linestyle() == "--" and np.isfinite(dashed.get_xdata()).any()
        expected = _hill(np.where(inside, grid, dashed.get_xdata()), hill["emax"][i, j],
                         hill["ec50"][i, j], hill["hill"][i, j])
        np.testing.assert_allclose(solid.get_ydata(), expected, rtol=1e-4, atol=1e-6)
        # extrapolation shaded on both sides of [0.5, 1]
        spans = by_gid(a.patches, "extrapolation")
        edges = sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6))
                       for p in spans)
        assert edges == [(0.05, 0.5), (1.0, 20.0)]  # a decade beyond the doses 0.5 .. 2
        # observed means ± s.e.: filled at fitted doses, open at the held-out dose
        (points,), (open_points,) = (by_gid(a.get_lines(), "observed"),
                                     by_gid(a.get_lines(), "observed_heldout"))
        rows = np.flatnonzero(pert == g)
        fit_rows = [k for k in rows if data.context_names[k] not in held]
        np.testing.assert_allclose(points.get_xdata(), dose[fit_rows])
        np.testing.assert_allclose(points.get_ydata(),
                                   [residual[ctx == k, j].mean() for k in fit_rows],
                                   rtol=1e-4, atol=1e-5)
        assert open_points.get_xdata().tolist() == [2.0]
        assert open_points.get_markerfacecolor() == "white"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["fitted Hill curve, fitted doses", "curve extrapolated",
                      "outside the fitted doses", "no effect (control level)",
                      "observed mean x − f(parents) ± s.e., fitted dose",
                      "observed, held-out dose"]
    assert "π or P(I=1 | cells) ≥ 0.5" in fig.get_suptitle()


def test_dose_response_grid_in_user_units_with_draws_and_given_axes(fitted):
    bench, model, result = fitted
    data = bench.train
    pairs = _expected_pairs(model, result.sites, data, [], 1, 0.0)  # one pair per drug
    _, point = plots.plot_dose_response_grid(model, result.sites, data, top=1,
                                             min_probability=0.0)
    # two identical draws draw the point's curves; doses in nM with 1 model unit = 1000 nM,
    # from the scale the data carries
    draws = {k: np.stack([np.asarray(v)] * 2) for k, v in result.sites.items()}
    fig, axes = plt.subplots(2, 2)
    in_nm = data.replace(dose_scale=DoseScale("nM", 1000.0))
    out_fig, nm = plots.plot_dose_response_grid(model, draws, in_nm, top=1,
                                                min_probability=0.0, ax=axes)
    assert out_fig is fig and list(nm) == list(axes.ravel()) and len(pairs) == 4
    for a, b in zip(point, nm, strict=True):
        (p_line,), (n_line,) = by_gid(a.get_lines(), "fit"), by_gid(b.get_lines(), "fit")
        np.testing.assert_allclose(n_line.get_xdata(), 1000.0 * p_line.get_xdata(), rtol=1e-9)
        np.testing.assert_allclose(n_line.get_ydata(), p_line.get_ydata(), rtol=1e-4, atol=1e-6)
        assert b.get_xlabel() == "dose (nM)" and a.get_title() == b.get_title()
    with pytest.raises(ValueError, match="must hold 4 axes"):
        plots.plot_dose_response_grid(model, result.sites, data, top=1, min_probability=0.0,
                                      ax=axes[0])
    # nothing likely (no cells, so π alone, which stays below 1): one panel that says so
    fig, (only,) = plots.plot_dose_response_grid(model, result.sites, data.contexts_only(),
                                                 min_probability=1.0)
    assert "no perturbation has a variable with target probability ≥ 1" in only.texts[0].get_text()
