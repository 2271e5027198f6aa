import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import log_density

import gim_ppl
from gim_ppl import cli
from gim_ppl.evaluation import perf
from tests._problems import random_sites, small_data

FLOOR_OPTIONS = {"default": {}, "pooled": {"pooled": "some"},
                 "edge_mask": {"edge_mask": np.triu(np.ones((3, 3), bool), 1)},
                 "shared_targets": {"shared_targets": True},
                 "gp": {"intervention_map": "gp", "map_anchors": "data"},
                 "ard_mlp": {"shrinkage": "ard", "mechanism": "mlp"}}


@pytest.mark.parametrize("name", list(FLOOR_OPTIONS))
def test_floor_loss_is_the_models_negative_log_joint(name):
    """The pure-JAX floor times the NumPyro model's objective in every configuration: it
    once dropped pooled offsets, the edge mask and the GP anchors."""
    data = small_data()
    options = dict(FLOOR_OPTIONS[name])
    if options.get("pooled") == "some":  # one perturbation pooled, the others new
        options["pooled"] = data.perturbation_names[:1]
    if options.get("map_anchors") == "data":
        options["map_anchors"] = data
    model = gim_ppl.GIM(3, 2, **options)
    sites = random_sites(model)
    unconstrained = {}
    for s, prior in model.site_priors.items():
        transform = biject_to(prior.support)
        if transform.codomain is not constraints.real:  # a positive site
            sites[s] = jnp.abs(sites[s]) + 0.1
        unconstrained[s] = transform.inv(sites[s])
    want, _ = log_density(model, (data,), {}, sites)
    got = perf.floor_loss(model, unconstrained, data, jax.random.key(0))
    assert np.isfinite(want)
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
