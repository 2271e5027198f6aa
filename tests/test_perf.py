import json

import jax
import jax.numpy as jnp
import numpy as np
from _problems import random_sites, small_data
from numpyro.infer.util import log_density

import gim_ppl
from gim_ppl import cli
from gim_ppl.evaluation import perf


def test_floor_loss_is_the_models_negative_log_joint():
    # the pure-JAX floor must time the same objective as the NumPyro model
    data = small_data()
    for marginal in ("exact",):
        model = gim_ppl.GIM(3, 2, marginal=marginal)
        sites = random_sites(model)
        unconstrained = {**sites, "noise_scale": jnp.log(sites["noise_scale"])}
        want, _ = log_density(model, (data,), {}, sites)
        got = perf.floor_loss(model, unconstrained, data, jax.random.key(0))
        np.testing.assert_allclose(got, -want, rtol=1e-5)


def test_random_cells_shapes():
    data = perf.random_cells(1000, 7, n_contexts=10)
    assert data.x.shape == (1000, 7) and data.n_contexts == 10
    np.testing.assert_array_equal(data.cells_per_context(), np.full(10, 100))


def test_perf_quick_cli_writes_tables(tmp_path, monkeypatch):
    small = perf.PerfConfig(step_vars=(5,), cells=(500,), vars_=(5,), vars_cells=500,
                            mlp_max_vars=5, n_steps=4, repeats=1, full_fit_steps=20,
                            full_fit_marginals=("exact",), large=((600, 6),),
                            map_perturbations=(4,))
    monkeypatch.setattr(perf.PerfConfig, "quick", classmethod(lambda cls: small))
    # two of the intervention maps exercise the maps table; the GP and horseshoe maps' steps
    # have their own tests (test_intervention_maps) and cost ~40 s of compiling here
    monkeypatch.setattr(perf, "MAP_VARIANTS", perf.MAP_VARIANTS[:2])
    assert cli.main(["bench", "--perf", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "perf.json").read_text())
    assert {r["marginal"] for r in res["steps"]} == {"exact", "relaxed_mc"}
    for r in res["steps"]:
        assert r["numpyro"]["seconds_per_step"] > 0 and r["floor"]["seconds_per_step"] > 0
        assert np.isfinite(r["ratio"])
    assert {r["mechanism"] for r in res["scaling"]} == {"linear", "mlp"}
    # the extra large point runs for the linear mechanism only
    assert [(r["mechanism"], r["n_cells"], r["n_vars"]) for r in res["scaling"]
            if r["axis"] == "large"] == [("linear", 600, 6)]
    assert [r["map"] for r in res["maps"]] == [m for m, _ in perf.MAP_VARIANTS]
    assert res["maps"][0]["ratio_to_linear"] == 1.0
    assert all(r["seconds_per_step"] > 0 for r in res["maps"])
    fit_row = res["full_fit"][0]
    assert 0.0 <= fit_row["target_auroc_full_ood"] <= 1.0
    assert np.isfinite(fit_row["mean_error_full_ood"])
    assert "NumPyro vs pure-JAX floor" in (tmp_path / "perf.md").read_text()
