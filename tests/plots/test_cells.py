"""`gim_ppl.plots.cells`: predicted against observed cells of one context."""

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection

from gim_ppl import plots
from tests.plots.figures import by_gid


def test_predicted_vs_observed_panels(fitted):
    bench, model, result = fitted
    test = bench.full_ood
    pred = model.predict(result.sites, test, key=jax.random.key(1), n_cells=40)
    name = test.context_names[3]
    fig, axes = plots.plot_predicted_vs_observed(pred, test, name, pair=("x2", "x0"))
    assert len(axes) == 5 and len(fig.axes) == 5
    for a, var in zip(axes[:4], test.var_names, strict=True):
        observed_line, predicted_line = a.get_lines()
        assert a.get_xlabel() == var
        assert predicted_line.get_linestyle() == "--"
        grid, dens = observed_line.get_xdata(), observed_line.get_ydata()
        area = np.sum(np.diff(grid) * (dens[1:] + dens[:-1]) / 2.0)
        assert 0.9 < area < 1.01  # a density over the plotted range
    scatter = axes[4]
    (observed_pts,) = by_gid(scatter.collections, "observed")
    (predicted_pts,) = by_gid(scatter.collections, "predicted")
    assert isinstance(observed_pts, PathCollection)
    x_obs = np.asarray(test.x)[np.asarray(test.context) == 3]
    np.testing.assert_allclose(observed_pts.get_offsets(), x_obs[:, [2, 0]], rtol=1e-6)
    assert predicted_pts.get_offsets().shape == (40, 2)
    assert (scatter.get_xlabel(), scatter.get_ylabel()) == ("x2", "x0")
    assert fig._suptitle.get_text() == f"context {name}"


def test_marginals_and_pair_on_given_axes(fitted):
    bench, model, result = fitted
    test = bench.partial_ood
    pred = model.predict(result.sites, test, key=jax.random.key(2), n_cells=30)
    fig, axes = plt.subplots(1, 2)
    out_fig, out_axes = plots.plot_marginals(pred, test, 1, ["x1", "x3"], ax=axes)
    assert out_fig is fig and list(out_axes) == list(axes)
    assert [a.get_xlabel() for a in axes] == ["x1", "x3"]
    assert all(len(a.get_lines()) == 2 for a in axes)
    _, ax = plots.plot_pair(pred, None, 1, (0, 1), max_points=10)
    (only,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert only.get_offsets().shape == (10, 2)
    with pytest.raises(ValueError, match="unknown context"):
        plots.plot_marginals(pred, test, "no-such-context")
    with pytest.raises(ValueError, match="two variables"):
        plots.plot_pair(pred, test, 0, ("x0",))
    with pytest.raises(ValueError, match="both are None"):
        plots.plot_pair(None, None, 0)
