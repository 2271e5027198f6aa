import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gim_ppl import PerturbationData


def arrays(n_cells=12, d=3, k=3, p=2, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        x=rng.normal(size=(n_cells, d)),
        context=np.arange(n_cells) % k,
        features=rng.normal(size=(k, p)),
        dose=np.linspace(0.0, 1.0, k),
        observational=np.arange(k) == 0,
    )


def build(**overrides):
    a = arrays()
    a.update(overrides)
    x, ctx = a.pop("x"), a.pop("context")
    return PerturbationData.from_arrays(x, ctx, **a)


def test_valid_input_builds_and_keeps_shapes():
    data = build()
    assert data.x.shape == (12, 3) and data.n_contexts == 3 and data.n_features == 2
    assert data.context.dtype == np.int32
    np.testing.assert_array_equal(data.cells_per_context(), [4, 4, 4])
    # observational features are ignored and stored as zeros; perturbations inferred
    np.testing.assert_array_equal(np.asarray(data.features)[0], 0.0)
    np.testing.assert_array_equal(np.asarray(data.perturbation), [-1, 0, 1])


def test_does_not_modify_caller_arrays():
    a = arrays()
    a["features"][0] = np.nan  # allowed: observational row
    copies = {k: np.array(v, copy=True) for k, v in a.items()}
    x, ctx = a.pop("x"), a.pop("context")
    PerturbationData.from_arrays(x, ctx, **a)
    np.testing.assert_array_equal(x, copies["x"])
    np.testing.assert_array_equal(ctx, copies["context"])
    np.testing.assert_array_equal(a["features"], copies["features"])  # NaN row kept (equal_nan)


@pytest.mark.parametrize("bad, message", [
    (np.inf, r"x has non-finite values .* cells \[5\]"),
    (np.nan, r"x has non-finite values .* cells \[5\]"),
])
def test_non_finite_cells_are_named(bad, message):
    a = arrays()
    a["x"][5, 1] = bad
    with pytest.raises(ValueError, match=message):
        build(x=a["x"])


def test_non_finite_features_of_perturbational_context():
    a = arrays()
    a["features"][2, 0] = np.nan
    with pytest.raises(ValueError, match=r"features .* perturbational contexts \[2\]"):
        build(features=a["features"])


def test_negative_dose_names_contexts():
    with pytest.raises(ValueError, match=r"dose must be >= 0; negative at contexts \[1\]"):
        build(dose=np.array([0.0, -0.5, 1.0]))


def test_context_index_out_of_range_names_cells():
    ctx = np.arange(12) % 3
    ctx[[3, 7]] = [3, -1]
    with pytest.raises(ValueError, match=r"out of range at cells \[3, 7\]"):
        build(context=ctx)


def test_feature_rows_must_match_contexts():
    with pytest.raises(ValueError, match=r"features has 4 rows but there are 3 contexts"):
        build(features=np.zeros((4, 2)))


def test_empty_perturbational_context_is_rejected():
    ctx = np.arange(12) % 2  # context 2 gets no cells
    with pytest.raises(ValueError, match=r"contexts \[2\] have no cells \(perturbational\)"):
        build(context=ctx)


def test_no_cells_at_all_is_named_not_a_reshape_error():
    """Zero rows of x raised numpy's "cannot reshape array of size 0" from the float32
    range check (found by the fuzz oracle once it asked for the argument's own name)."""
    with pytest.raises(ValueError, match=r"^x has no cells \(shape \(0, 3\)\)"):
        build(x=np.zeros((0, 3)), context=np.zeros(0, np.int64))
    data = PerturbationData.from_arrays(np.zeros((0, 3)), np.zeros(0, np.int64),
                                        require_cells=False,
                                        **{k: v for k, v in arrays().items()
                                           if k not in ("x", "context")})
    assert data.n_cells == 0 and data.n_contexts == 3


def test_wrong_types_and_shapes():
    with pytest.raises(TypeError, match="context must hold integers"):
        build(context=np.full(12, 0.5))
    with pytest.raises(ValueError, match=r"context must have shape \(12,\)"):
        build(context=np.zeros(11, dtype=int))
    with pytest.raises(ValueError, match="x must have 2 dimension"):
        build(x=np.zeros(12))
    with pytest.raises(TypeError, match="observational must be a boolean"):
        build(observational=np.array([0.5, 0.0, 0.0]))
    with pytest.raises(ValueError, match="duplicate names"):
        PerturbationData.from_arrays(np.zeros((3, 2)), np.zeros(3, int), features=np.zeros((1, 1)),
                                     dose=[0.0], observational=[True], var_names=["a", "a"])


def test_is_a_pytree_and_immutable():
    data = build()
    leaves, treedef = jax.tree_util.tree_flatten(data)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    assert again.var_names == data.var_names
    doubled = jax.jit(lambda d: d.x * 2)(data)
    np.testing.assert_allclose(doubled, np.asarray(data.x) * 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.x = None


def test_replace_changes_only_the_named_fields():
    data = build()
    before = np.array(data.x)
    x2 = before + 1.0
    new = data.replace(x=jnp.asarray(x2))
    np.testing.assert_allclose(new.x, x2)
    assert new.context is data.context and new.var_names == data.var_names
    np.testing.assert_array_equal(data.x, before)  # the original is unchanged
    assert data.contexts_only().x is None and data.contexts_only().context is None


def test_context_vocabulary_against_a_direct_computation():
    data = build()
    x, ctx = np.asarray(data.x, float), np.asarray(data.context)
    moments = data.context_moments()
    for k in range(data.n_contexts):
        np.testing.assert_allclose(moments.mean[k], x[ctx == k].mean(0), rtol=1e-12)
        np.testing.assert_allclose(moments.var[k], x[ctx == k].var(0), rtol=1e-9, atol=1e-12)
        assert moments.count[k] == (ctx == k).sum()
    obs = np.asarray(data.observational)
    np.testing.assert_array_equal(data.control_cells(), np.asarray(data.x)[obs[ctx]])
    ids, first = data.perturbation_contexts()
    pert = np.asarray(data.perturbation)
    assert list(ids) == sorted(set(pert[pert >= 0].tolist()))
    assert all(pert[f] == g and (pert[:f] != g).all() for g, f in zip(ids, first, strict=True))


def test_subset_and_split_by():
    data = build()
    sub = data.subset([2, 0])
    assert sub.context_names == ("context_2", "context_0")
    np.testing.assert_array_equal(sub.cells_per_context(), [4, 4])
    x_full, ctx_full = np.asarray(data.x), np.asarray(data.context)
    np.testing.assert_allclose(np.asarray(sub.x)[np.asarray(sub.context) == 0],
                               x_full[ctx_full == 2])
    parts = data.split_by(np.asarray(data.observational))
    assert parts[True].n_contexts == 1 and parts[False].n_contexts == 2
    with pytest.raises(ValueError, match="out of range"):
        data.subset([5])
    with pytest.raises(ValueError, match="unknown context names"):
        data.subset(["nope"])


def test_contexts_only_construction():
    data = PerturbationData.from_arrays(features=np.ones((2, 2)), dose=[1.0, 2.0],
                                        observational=[False, False], n_vars=4)
    assert data.x is None and data.n_vars == 4 and data.n_cells == 0
    with pytest.raises(ValueError, match="give var_names or n_vars"):
        PerturbationData.from_arrays(features=np.ones((2, 2)), dose=[1.0, 2.0],
                                     observational=[False, False])


def test_explicit_perturbations_are_checked_and_kept():
    with pytest.raises(ValueError, match=r"perturbation must be >= 0 for perturbational "
                                         r"contexts; negative at \[2\]"):
        build(perturbation=np.array([-1, 0, -1]))
    with pytest.raises(ValueError, match=r"perturbation must be an int array of shape \(3,\)"):
        build(perturbation=np.array([0.0, 1.0, 2.0]))
    # controls become -1 whatever they were given; names may list absent perturbations
    data = build(perturbation=np.array([5, 0, 0]), perturbation_names=["a", "b", "c"])
    np.testing.assert_array_equal(np.asarray(data.perturbation), [-1, 0, 0])
    assert data.perturbation_names == ("a", "b", "c")
    ids, first = data.perturbation_contexts()
    assert list(ids) == [0] and list(first) == [1]


def test_cells_and_their_contexts_come_together():
    a = arrays()
    with pytest.raises(ValueError, match="x was given without context"):
        PerturbationData.from_arrays(a["x"], features=a["features"], dose=a["dose"],
                                     observational=a["observational"])
    with pytest.raises(ValueError, match="context was given without x"):
        PerturbationData.from_arrays(None, a["context"], features=a["features"],
                                     dose=a["dose"], observational=a["observational"], n_vars=3)
    with pytest.raises(ValueError, match=r"observational has 2 entries but dose has 3"):
        build(observational=np.array([True, False]))


# --- the dose scale and prediction contexts -------------------------------------------------


def test_dose_scale_is_static_metadata_kept_by_every_view():
    from gim_ppl.datasets import DoseScale

    scale = DoseScale("nM", 1000.0)
    data = build(dose_scale=scale)
    assert build().dose_scale is None  # every existing call keeps working
    leaves, treedef = jax.tree_util.tree_flatten(data)
    assert all(leaf is not scale for leaf in leaves)  # not a pytree leaf
    assert jax.tree_util.tree_unflatten(treedef, leaves).dose_scale == scale
    for view in (data.subset([0, 2]), data.contexts_only(), data.for_prediction(2),
                 data.replace(x=data.x + 1.0), data.split_by(np.asarray(data.observational))[True]):
        assert view.dose_scale == scale
    assert jax.jit(lambda d: d)(data).dose_scale == scale
    with pytest.raises(TypeError, match="dose_scale must have unit, to_model and to_user"):
        build(dose_scale="nM")


def test_for_prediction_gives_each_context_n_cells_and_no_x():
    data = build()
    new = data.for_prediction(5)
    assert new.x is None and new.n_cells == 15
    np.testing.assert_array_equal(np.asarray(new.context), np.repeat(np.arange(3), 5))
    np.testing.assert_array_equal(new.cells_per_context(), [5, 5, 5])
    assert new.context_names == data.context_names and new.var_names == data.var_names
    np.testing.assert_array_equal(np.asarray(new.dose), np.asarray(data.dose))
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="n_cells must be a positive integer"):
            data.for_prediction(bad)


def _docs_snippet(page: str, marker: str) -> str:
    """The ```python block of a docs page that contains `marker`."""
    from tests import ROOT

    text = (ROOT / "docs" / page).read_text()
    blocks = text.split("```python\n")[1:]
    (code,) = [b.split("```")[0] for b in blocks if marker in b]
    return code


def test_predictive_snippet_of_the_docs_returns_cells():
    """docs/method.md's `Predictive` snippet, run verbatim on a small problem."""
    import gim_ppl
    from tests._problems import random_sites

    bench = gim_ppl.datasets.synthetic_hill(0, n_vars=3, n_features=2, n_train_perturbations=2,
                                            n_test_perturbations=2, train_doses=(1.0,),
                                            partial_ood_doses=(0.5,), n_cells=4,
                                            n_test_cells=4, n_observational=8)
    model = gim_ppl.GIM(3, 2)
    sites = random_sites(model)
    namespace = {"jax": jax, "model": model, "sites": sites, "bench": bench}
    exec(_docs_snippet("method.md", "for_prediction"), namespace)
    x, new = np.asarray(namespace["x"]), namespace["new"]
    k = bench.full_ood.n_contexts
    assert x.shape == (1, 100 * k, 3) and np.all(np.isfinite(x))
    assert new.x is None and new.cells_per_context().tolist() == [100] * k
    # the cells follow the model: run on contexts with a control (no targets, so no target
    # draw), the control's cells have the mean of model.predict's
    from types import SimpleNamespace

    namespace["bench"] = SimpleNamespace(full_ood=bench.train)
    exec(_docs_snippet("method.md", "for_prediction"), namespace)
    x, ctx = np.asarray(namespace["x"])[0], np.asarray(namespace["new"].context)
    pred = model.predict(sites, bench.train, key=jax.random.key(3), n_cells=2000)
    obs = int(np.flatnonzero(np.asarray(bench.train.observational))[0])
    np.testing.assert_allclose(x[ctx == obs].mean(0), pred.context_means()[obs], atol=0.3)


def test_features_far_from_unit_scale_are_named_in_a_warning():
    import warnings

    rng = np.random.default_rng(0)
    z = np.column_stack([rng.normal(190.0, 40.0, 4), rng.normal(0.0, 1.0, 4)])  # MW, z-score
    kw = dict(dose=np.ones(5), observational=np.r_[True, False, False, False, False],
              perturbation=np.r_[-1, 0, 1, 2, 3], n_vars=2, require_cells=False,
              feature_names=["mol_weight", "pc0"])
    feats = np.vstack([np.zeros((1, 2)), z])
    with pytest.warns(UserWarning, match=r"features: columns mol_weight are far from unit "
                                         r"scale .* standardise them"):
        PerturbationData.from_arrays(None, features=feats, **kw)
    standardised = (z - z.mean(0)) / z.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unit-scale features: no warning at all
        PerturbationData.from_arrays(None, features=np.vstack([np.zeros((1, 2)), standardised]),
                                     **kw)
