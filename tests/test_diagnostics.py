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
