"""`gim_ppl.diagnose`: checks against draws whose behaviour is known by construction —
independent draws pass every check; chains with different means fail R-hat; autocorrelated
chains fail ESS; recorded divergences and an energy that moves like a random walk (E-BFMI ≈ 0)
are reported."""

import arviz as az
import numpy as np
import pytest

import gim_ppl
from gim_ppl.inference.diagnostics import Thresholds


def idata(posterior, **stats):
    return az.from_dict(posterior=posterior, sample_stats=stats or None)


def iid(seed=0, chains=4, draws=1000, shape=(3,)):
    return np.random.default_rng(seed).normal(size=(chains, draws, *shape))


def test_independent_draws_pass():
    rng = np.random.default_rng(1)
    energy = rng.normal(size=(4, 1000))  # independent energies: E-BFMI ≈ 2
    d = gim_ppl.diagnose(idata({"a": iid(), "zero": np.zeros((4, 1000))},
                               diverging=np.zeros((4, 1000), bool), energy=energy))
    assert d.ok and d.problems == ()
    assert len(d.table) == 3 and d.n_constant == 1  # the constant scalar is set aside
    assert d.table["r_hat"].max() < 1.01 and d.table["ess_bulk"].min() > 2000
    assert d.divergences == 0 and (d.bfmi > 1.5).all()


def test_failures_are_named():
    x = iid()
    x[0] += 3.0  # one chain elsewhere
    walk = np.cumsum(np.random.default_rng(2).normal(size=(4, 1000)), axis=1)
    sticky = np.repeat(iid(seed=3, draws=20), 50, axis=1)  # ~20 distinct values per chain
    diverging = np.zeros((4, 1000), bool)
    diverging[1, :7] = True
    with pytest.warns(UserWarning, match="MCMC diagnostics failed") as rec:
        d = gim_ppl.diagnose(idata({"a": x, "b": sticky}, diverging=diverging, energy=walk))
    assert not d.ok
    text = "\n".join(d.problems)
    assert "R-hat > 1.01" in text and "a[" in text
    assert "bulk ESS < 400 for 6 of 6" in text and "tail ESS < 400" in text
    assert (d.table.loc[["b[0]", "b[1]", "b[2]"], "ess_bulk"] < 400).all()
    assert "7 divergent transitions" in text and d.divergences == 7
    assert "E-BFMI < 0.3 in chains [0, 1, 2, 3]" in text
    assert str(rec[0].message).count("\n- ") == len(d.problems)


def test_thresholds_and_input_checks():
    x = iid(chains=4, draws=200)  # bulk ESS ≈ 800 > 400, < 1000
    assert gim_ppl.diagnose(idata({"a": x}), warn=False).ok
    strict = Thresholds(ess_bulk=1000.0, ess_tail=1000.0)
    d = gim_ppl.diagnose(idata({"a": x}), thresholds=strict, warn=False)
    assert any("bulk ESS < 1000" in p for p in d.problems)
    with pytest.raises(ValueError, match="at least 2 chains"):
        gim_ppl.diagnose(idata({"a": iid(chains=1)}))
    with pytest.raises(TypeError, match="idata_or_mcmc"):
        gim_ppl.diagnose({"a": x})


ORIENTATION_HINT = (
    "chains sit in different edge orientations (A → B vs B → A), modes of the graph, not a "
    "sampler bug: start every chain from one MAP (run_mcmc(..., init_strategy=init_to_value("
    "values=fit_result.sites))), restrict the orientations with GIM(edge_mask=...), or "
    "report the modes")


def weights_idata(edge_in_chain_1, seed=0, draws=1000, **extra):
    """`weights (2, draws, 3, 3)` over variables A, B, C: chain 0 has the edge A → B
    (W[A, B] ≈ 0.8, W[B, A] ≈ 0); chain 1 has `edge_in_chain_1` ("A->B" or "B->A") with
    weight 1.2; other entries independent noise, zero diagonal."""
    rng = np.random.default_rng(seed)
    w = 0.05 * rng.normal(size=(2, draws, 3, 3))
    w[0, :, 0, 1] += 0.8
    i, j = (0, 1) if edge_in_chain_1 == "A->B" else (1, 0)
    w[1, :, i, j] += 1.2
    w[:, :, [0, 1, 2], [0, 1, 2]] = 0.0
    posterior = {"weights": w, "bias": 0.1 * rng.normal(size=(2, draws, 3)), **extra}
    return az.from_dict(posterior=posterior, coords={"var": list("ABC"), "parent": list("ABC")},
                        dims={"weights": ["parent", "var"], "bias": ["var"]})


def test_rhat_hint_names_swapped_edge_orientations():
    with pytest.warns(UserWarning, match="MCMC diagnostics failed") as rec:
        d = gim_ppl.diagnose(weights_idata("B->A"))
    assert "R-hat > 1.01" in d.problems[0]
    assert d.hints == (ORIENTATION_HINT,)
    assert str(rec[0].message).endswith("\nhint: " + ORIENTATION_HINT)
    # the same edge in both chains, only stronger in one: no orientation modes
    same = gim_ppl.diagnose(weights_idata("A->B"), warn=False)
    assert "R-hat > 1.01" in same.problems[0]
    assert same.hints == (
        "no edge-orientation modes or scale funnel seen; the chains have not mixed yet "
        "(worst: weights[A, B]): run more num_warmup and num_samples, and look at "
        "az.plot_trace(idata, var_names=['weights'])",)


def test_rhat_hint_names_a_funnel_on_scales_or_divergences():
    rng = np.random.default_rng(3)
    scale = np.exp(0.1 * rng.normal(size=(2, 1000, 3)))
    scale[1] *= 3.0  # the chains disagree on the scales only
    d = gim_ppl.diagnose(idata({"noise_scale": scale, "bias": iid(chains=2)}), warn=False)
    assert d.hints == (
        "a funnel between scales and the values they scale (3 of 3 failing scalars are "
        "scales): raise run_mcmc(..., target_accept_prob=0.95), tighten the scale priors "
        "(GIM(priors=Priors(...))), or parametrise the scaled sites non-centred",)
    x = iid(chains=2)
    x[1] += 3.0
    diverging = np.zeros((2, 1000), bool)
    diverging[0, :5] = True
    d = gim_ppl.diagnose(idata({"bias": x}, diverging=diverging), warn=False)
    assert d.hints == (
        "a funnel between scales and the values they scale (5 divergent transitions): raise "
        "run_mcmc(..., target_accept_prob=0.95), tighten the scale priors "
        "(GIM(priors=Priors(...))), or parametrise the scaled sites non-centred",)


def test_no_hint_when_rhat_passes():
    # ESS fails (a limit above the draws), R-hat passes: hints are for R-hat only
    d = gim_ppl.diagnose(idata({"a": iid()}), thresholds=Thresholds(ess_bulk=1e5),
                         warn=False)
    assert not d.ok and not any("R-hat" in p for p in d.problems)
    assert d.hints == ()
    passing = gim_ppl.diagnose(idata({"a": iid()}))
    assert passing.ok and passing.hints == ()
