"""Causal queries (`gim_ppl.design.queries`) against closed forms of a linear-Gaussian SCM.

The SCM, in the package's row convention (`weights[parent, child]`):

    x = x W + b + t∘s + σ∘ε   ⇒   x = e A,  e = b + t∘s + σ∘ε,  A = (I − W)⁻¹,

and do(x_i = v) zeroes column i of W and sets e_i = v: x = e_do A_do. Targets are certain
(logits ±30), so every cell's targets are known and the per-cell checks are exact (float64,
~1e-10): a query and a baseline with the same key share every cell's noise. All queries run
on 3 · 1000 cells so that the compiled pass is reused.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gim_ppl
from gim_ppl.design import block_targets, combine, counterfactual, do_variables

W = np.array([[0.0, 1.2, 0.5], [0.0, 0.0, -0.8], [0.0, 0.0, 0.0]])  # 0 → 1 → 2, 0 → 2
BIAS, SIGMA = np.array([0.5, -0.2, 0.1]), np.array([0.6, 0.8, 0.5])
TARGETS = np.array([[0, 1, 0], [0, 1, 1]], float)  # perturbation 0 hits x1; 1 hits x1, x2
EMAX = np.array([[0.0, 2.0, 0.0], [0.0, 1.0, -1.5]])
DOSE = np.array([0.0, 1.0, 3.0])  # control, perturbation 0 at dose 1, perturbation 1 at 3
N = 1000
ATOL = 1e-10


@pytest.fixture(scope="module")
def scm():
    """`(model, sites, contexts)` in float64: EC50 = 1, Hill coefficient 1."""
    with jax.enable_x64(True):
        model = gim_ppl.GIM(3, 2)
        sites = {s: jnp.zeros(shape) for s, shape in model.site_shapes.items()}
        sites.update(weights=jnp.asarray(W), bias=jnp.asarray(BIAS),
                     noise_scale=jnp.asarray(SIGMA),
                     target_weights=jnp.asarray(30.0 * (2 * TARGETS - 1)),
                     emax_weights=jnp.asarray(EMAX))
        contexts = gim_ppl.PerturbationData.from_arrays(
            features=np.array([[0, 0], [1, 0], [0, 1]], float), dose=DOSE,
            observational=np.array([True, False, False]), n_vars=3)
        yield model, sites, contexts


def exogenous_shift(contexts):
    """`t∘s (n_contexts, n_vars)` of every context (Hill with EC50 = 1, h = 1)."""
    feats, dose = np.asarray(contexts.features), np.asarray(contexts.dose)
    pert = np.argmax(feats, axis=1)
    active = feats.any(axis=1)[:, None]
    return np.where(active, TARGETS[pert] * EMAX[pert] * (dose / (1 + dose))[:, None], 0.0)


def solve(exogenous, weights=W):
    return exogenous @ np.linalg.inv(np.eye(3) - weights)


def do_closed_form(exogenous, values):
    """Cells under do(x_i = v) from the exogenous terms `e (n, 3)` of the same cells."""
    w, e = W.copy(), exogenous.copy()
    for i, v in values.items():
        w[:, i], e[:, i] = 0.0, v
    return solve(e, w)


def assert_within(actual, expected, tolerance):
    """|actual − expected| <= tolerance elementwise (tolerance an array)."""
    gap = np.abs(np.asarray(actual) - expected)
    assert np.all(gap <= tolerance), (gap, tolerance)


def baseline(scm, key, contexts=None):
    """Cells with the same noise and targets as any query with `key` (blocking x0, which no
    perturbation targets, changes nothing) and their exogenous terms `σ∘ε` recovered."""
    model, sites, ctx = scm
    ctx = ctx if contexts is None else contexts
    base = block_targets(model, sites, ctx, [0], key=key, n_cells=N)
    x = np.asarray(base.x)
    rows = np.asarray(base.context)
    noise = x @ (np.eye(3) - W) - BIAS - exogenous_shift(ctx)[rows]
    return x, rows, noise


@pytest.mark.parametrize("values", [{1: 2.0}, {0: -1.0, 1: 2.0}, {2: 0.3, 0: 1.5}])
def test_do_matches_the_closed_form_cell_by_cell(scm, values):
    model, sites, contexts = scm
    key = jax.random.key(0)
    x, rows, noise = baseline(scm, key)
    with jax.enable_x64(True):
        held = do_variables(model, sites, contexts, values, key=key, n_cells=N)
    assert held.x.shape == (3 * N, 3)
    np.testing.assert_array_equal(held.context, rows)
    expected = do_closed_form(BIAS + exogenous_shift(contexts)[rows] + noise, values)
    np.testing.assert_allclose(held.x, expected, rtol=0, atol=ATOL)
    for i, v in values.items():  # the held variables are exactly their values
        np.testing.assert_allclose(held.x[:, i], v, rtol=0, atol=ATOL)
    assert np.abs(np.asarray(held.x) - x).max() > 0.1  # the intervention did something


def test_do_mean_and_covariance_match_the_closed_form(scm):
    """do(x1 = 2) in the control: m = e_do A_do, Σ = A_doᵀ diag(σ_do²) A_do. With n cells a
    sample mean has sd √(Σ_jj / n) and a sample covariance sd √((Σ_ii Σ_jj + Σ_ij²) / n):
    5 sd bounds fail with probability < 1e-5 per entry."""
    model, sites, contexts = scm
    with jax.enable_x64(True):
        held = do_variables(model, sites, contexts, {1: 2.0}, key=jax.random.key(1),
                            n_cells=N)
    x = np.asarray(held.x)[np.asarray(held.context) == 0]
    w_do, b_do, s_do = W.copy(), BIAS.copy(), SIGMA.copy()
    w_do[:, 1], b_do[1], s_do[1] = 0.0, 2.0, 0.0
    a_do = np.linalg.inv(np.eye(3) - w_do)
    mean, cov = b_do @ a_do, a_do.T @ np.diag(s_do**2) @ a_do
    assert_within(x.mean(0), mean, 5 * np.sqrt(np.diag(cov) / N) + ATOL)
    sd_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N)
    assert_within(np.cov(x.T), cov, 5 * sd_cov + ATOL)
    assert np.allclose(cov[1], 0.0) and cov[2, 2] > 0  # x1 fixed, its child still varies


def test_blocking_a_target_removes_exactly_its_shift(scm):
    model, sites, contexts = scm
    key = jax.random.key(2)
    x, rows, noise = baseline(scm, key)
    with jax.enable_x64(True):
        blocked = block_targets(model, sites, contexts, [1], key=key, n_cells=N)
    shift = exogenous_shift(contexts)
    shift[:, 1] = 0.0
    np.testing.assert_allclose(blocked.x, solve(BIAS + shift[rows] + noise), rtol=0,
                               atol=ATOL)
    # perturbation 0 hits x1 only: blocking it gives the control's distribution
    diff = np.asarray(blocked.x) - x
    np.testing.assert_allclose(diff[rows == 1], np.broadcast_to(
        -solve(exogenous_shift(contexts)[1]), (N, 3)), rtol=0, atol=ATOL)
    np.testing.assert_allclose(diff[rows == 0], 0.0, atol=ATOL)


def test_combination_unites_targets_and_adds_shifts(scm):
    """Perturbations 0 (x1) and 1 (x1, x2) together: targets {x1, x2}, shifts on the shared
    target x1 add. Closed form per cell, and the mean `(b + t_a∘s_a + t_b∘s_b) A`."""
    model, sites, contexts = scm
    first, second = contexts.subset([1, 2, 1]), contexts.subset([2, 1, 1])
    key = jax.random.key(3)
    _, rows, noise = baseline(scm, key, first)
    with jax.enable_x64(True):
        both = combine(model, sites, first, second, key=key, n_cells=N)
    assert both.context_names == first.context_names
    shifts = exogenous_shift(first) + exogenous_shift(second)
    np.testing.assert_allclose(both.x, solve(BIAS + shifts[rows] + noise), rtol=0, atol=ATOL)
    s0, s1 = exogenous_shift(contexts)[1], exogenous_shift(contexts)[2]
    assert s0[1] != 0 and s1[1] != 0 and np.allclose(shifts[0], s0 + s1)  # shared x1: added
    x = np.asarray(both.x)[rows == 0]
    cov = np.linalg.inv(np.eye(3) - W).T @ np.diag(SIGMA**2) @ np.linalg.inv(np.eye(3) - W)
    assert_within(x.mean(0), solve(BIAS + s0 + s1), 5 * np.sqrt(np.diag(cov) / N))
    # a perturbation combined with itself doubles its shift on its own targets
    np.testing.assert_allclose(np.asarray(both.x)[rows == 2],
                               solve(BIAS + 2 * s0 + noise[rows == 2]), rtol=0, atol=ATOL)


def observed_cells(n_per_context, seed=4):
    """Cells generated by the closed form with known noise: `(data, σ∘ε, rows)`."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(3), n_per_context)
    noise = SIGMA * rng.normal(size=(rows.size, 3))
    with jax.enable_x64(True):
        probe = gim_ppl.PerturbationData.from_arrays(
            features=np.array([[0, 0], [1, 0], [0, 1]], float), dose=DOSE,
            observational=np.array([True, False, False]), n_vars=3)
        x = solve(BIAS + exogenous_shift(probe)[rows] + noise)
        data = gim_ppl.PerturbationData.from_arrays(
            x, rows, features=np.asarray(probe.features), dose=DOSE,
            observational=np.array([True, False, False]))
    return data, noise, rows


def test_counterfactual_abducts_the_noise_and_matches_the_closed_form(scm):
    model, sites, _ = scm
    data, noise, rows = observed_cells(N)
    shift = exogenous_shift(data)
    with jax.enable_x64(True):
        held = counterfactual(model, sites, data, values={1: -0.5})
        moved = counterfactual(model, sites, data, context=2)
        both = counterfactual(model, sites, data, context=0, values={2: 1.0},
                              targets=TARGETS[[0, 0, 1]] * [[0], [1], [1]])
    assert held.shape == (3 * N, 3)
    np.testing.assert_allclose(held, do_closed_form(BIAS + shift[rows] + noise, {1: -0.5}),
                               rtol=0, atol=ATOL)
    # every cell, with its own noise, under perturbation 1 at dose 3
    np.testing.assert_allclose(moved, solve(BIAS + shift[2] + noise), rtol=0, atol=ATOL)
    # the control's cells are themselves in the control; then x2 held at 1
    np.testing.assert_allclose(both, do_closed_form(BIAS + noise, {2: 1.0}), rtol=0,
                               atol=ATOL)


def test_counterfactual_answers_once_per_draw(scm):
    """Two draws that differ in the intercepts: each draw abducts its own noise, so the
    counterfactual of draw k is the closed form with draw k's bias and that noise."""
    model, sites, _ = scm
    data, _, rows = observed_cells(N // 2, seed=5)
    bias2 = BIAS + np.array([1.0, 0.0, -2.0])
    draws = {s: jnp.stack([v, v]) for s, v in sites.items()}
    with jax.enable_x64(True):
        draws["bias"] = jnp.stack([jnp.asarray(BIAS), jnp.asarray(bias2)])
        out = counterfactual(model, draws, data, values={0: 0.0})
    assert out.shape == (2, 3 * N // 2, 3)
    shift = exogenous_shift(data)[rows]
    for row, bias in zip(out, (BIAS, bias2), strict=True):
        noise = np.asarray(data.x) @ (np.eye(3) - W) - bias - shift
        np.testing.assert_allclose(row, do_closed_form(bias + shift + noise, {0: 0.0}),
                                   rtol=0, atol=ATOL)


def test_a_weak_cycle_settles_exactly_and_a_strong_one_warns(scm):
    """1 → 2 → 1 with loop gain −0.72: do(x1 = 2) cuts the cycle, the passes converge to
    the closed form; with gain 0.8 they diverge and the query warns."""
    model, sites, contexts = scm
    key = jax.random.key(0)
    _, rows, noise = baseline(scm, key)
    weak = {**sites, "weights": sites["weights"].at[2, 1].set(0.9)}
    strong = {**sites, "weights": sites["weights"].at[2, 1].set(-1.0)}
    with jax.enable_x64(True):
        held = do_variables(model, weak, contexts, {1: 2.0}, key=key, n_cells=N)
        with pytest.warns(RuntimeWarning, match="cycle"):
            do_variables(model, strong, contexts, {1: 2.0}, key=key, n_cells=N)
    expected = do_closed_form(BIAS + exogenous_shift(contexts)[rows] + noise, {1: 2.0})
    np.testing.assert_allclose(held.x, expected, rtol=0, atol=ATOL)


def test_same_key_same_cells_other_key_other_cells(scm):
    model, sites, contexts = scm
    with jax.enable_x64(True):
        a, b, c = (do_variables(model, sites, contexts, {1: 0.0}, key=jax.random.key(k),
                                n_cells=N).x for k in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("call, match", [
    (lambda m, s, c, d: do_variables(m, s, c, {}, key=jax.random.key(0), n_cells=2),
     "values"),
    (lambda m, s, c, d: do_variables(m, s, c, {3: 1.0}, key=jax.random.key(0), n_cells=2),
     "values"),
    (lambda m, s, c, d: do_variables(m, s, c, {-1: 1.0}, key=jax.random.key(0), n_cells=2),
     "values"),
    (lambda m, s, c, d: do_variables(m, s, c, {1: np.nan}, key=jax.random.key(0), n_cells=2),
     r"values\[1\]"),
    (lambda m, s, c, d: do_variables(m, s, c, {1: np.inf}, key=jax.random.key(0), n_cells=2),
     r"values\[1\]"),
    (lambda m, s, c, d: do_variables(m, s, c, {1: 1.0}, key=jax.random.key(0), n_cells=0),
     "n_cells"),
    (lambda m, s, c, d: do_variables(m, s, c.replace(var_names=("a", "b")), {1: 1.0},
                                     key=jax.random.key(0), n_cells=2), "contexts"),
    (lambda m, s, c, d: do_variables(m, {**s, "noise_scale": jnp.zeros(3)}, c, {1: 1.0},
                                     key=jax.random.key(0), n_cells=2), "noise_scale"),
    (lambda m, s, c, d: block_targets(m, s, c, [], key=jax.random.key(0), n_cells=2),
     "blocked"),
    (lambda m, s, c, d: block_targets(m, s, c, [1, 1], key=jax.random.key(0), n_cells=2),
     "blocked"),
    (lambda m, s, c, d: block_targets(m, s, c, [5], key=jax.random.key(0), n_cells=2),
     "blocked"),
    (lambda m, s, c, d: combine(m, s, c, c.subset([1, 2, 1]), key=jax.random.key(0),
                                n_cells=2), "first"),
    (lambda m, s, c, d: combine(m, s, c.subset([1]), c.subset([1, 2]),
                                key=jax.random.key(0), n_cells=2), "second"),
    (lambda m, s, c, d: counterfactual(m, s, d), "values, context"),
    (lambda m, s, c, d: counterfactual(m, s, c, context=0), "data"),
    (lambda m, s, c, d: counterfactual(m, s, d, context=3), "context"),
    (lambda m, s, c, d: counterfactual(m, s, d, context=0, targets=np.ones((3, 2))),
     "targets"),
    (lambda m, s, c, d: counterfactual(m, s, d, context=0, targets=np.full((3, 3), 0.5)),
     "targets"),
])
def test_bad_input_is_a_value_error_naming_the_argument(scm, call, match):
    model, sites, contexts = scm
    data, _, _ = observed_cells(2)
    with jax.enable_x64(True), pytest.raises(ValueError, match=match):
        call(model, sites, contexts, data)


def test_wrong_types_are_type_errors(scm):
    model, sites, contexts = scm
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="model"):
        do_variables("gim", sites, contexts, {1: 1.0}, key=key, n_cells=2)
    with pytest.raises(TypeError, match="contexts"):
        do_variables(model, sites, np.zeros((3, 3)), {1: 1.0}, key=key, n_cells=2)
    with pytest.raises(TypeError, match="values"):
        do_variables(model, sites, contexts, [(1, 1.0)], key=key, n_cells=2)
    with pytest.raises(TypeError, match="blocked"):
        block_targets(model, sites, contexts, 1, key=key, n_cells=2)


def test_replace_effect_counterfactual_matches_the_closed_form(scm):
    """With `intervention_effect="replace"` a target's mechanism is replaced by its Hill
    mean: e_j = s_j + σ_j ε_j and column j of W is cut. Control cells moved into
    perturbation 1 (x1, x2 replaced), then x0 held at 1."""
    _, sites, _ = scm
    data, noise, rows = observed_cells(N // 2, seed=6)
    shift = np.asarray(np.where(TARGETS, EMAX, 0.0) * (DOSE[1:] / (1 + DOSE[1:]))[:, None])
    hits = np.vstack([np.zeros(3), TARGETS])  # per context
    means = np.vstack([BIAS, np.where(TARGETS > 0, shift, BIAS)])
    with jax.enable_x64(True):
        model = gim_ppl.GIM(3, 2, intervention_effect="replace")
        x = np.stack([solve(means[k] + noise[i], W * (1 - hits[k])[None, :])
                      for i, k in enumerate(rows)])
        data = data.replace(x=jnp.asarray(x))
        out = counterfactual(model, sites, data, context=2, values={0: 1.0})
    cut = W * (1 - hits[2])[None, :]
    cut[:, 0] = 0.0
    e = means[2] + noise
    e[:, 0] = 1.0
    np.testing.assert_allclose(out, solve(e, cut), rtol=0, atol=ATOL)


def test_cells_of_a_query_use_every_posterior_draw_in_turn(scm):
    """Two draws that differ only in the bias of x0 (0.5 and 50.5): cell c of a context uses
    draw ⌊2c / n⌋, so the first half of every context's cells sits at the first draw and the
    second half at the second. (A batch that used draw 0 for every cell passed before:
    mutant `query_cells_use_draw_0` in dev/mutants.py.)"""
    model, sites, contexts = scm
    with jax.enable_x64(True):
        draws = {s: jnp.stack([v, v]) for s, v in sites.items()}
        draws["bias"] = draws["bias"].at[1, 0].add(50.0)
        held = do_variables(model, draws, contexts, {2: 0.0}, key=jax.random.key(3),
                            n_cells=N)
    x0 = np.asarray(held.x)[:, 0].reshape(3, N)  # contexts × cells, context-major
    # x0 has no parents: x0 = bias + σ ε with σ = 0.6, so 10 sd apart from 50 is impossible
    assert np.all(np.abs(x0[:, : N // 2] - BIAS[0]) < 6.0)
    assert np.all(np.abs(x0[:, N // 2:] - (BIAS[0] + 50.0)) < 6.0)


def test_combination_under_replace_sets_targets_to_the_summed_hill_means(scm):
    """With `intervention_effect="replace"` a targeted variable loses its mechanism: x_j =
    (t_a s_a + t_b s_b)_j + σ_j ε_j, no bias, no parents; the others keep theirs. Closed form
    per cell with the noise of the shift model's baseline (same key, same noise). Kills
    mutant `combine_replace_ignores_second_targets` (dev/mutants.py): under "shift" a
    union that forgot `second`'s targets gives the same cells, under "replace" it does not."""
    _, sites, contexts = scm
    with jax.enable_x64(True):
        model = gim_ppl.GIM(3, 2, intervention_effect="replace")
        first, second = contexts.subset([1, 2]), contexts.subset([2, 2])
        key = jax.random.key(5)
        _, rows, noise = baseline(scm, key, first)
        both = combine(model, sites, first, second, key=key, n_cells=N)
    shifts = exogenous_shift(first) + exogenous_shift(second)        # (2, 3)
    targeted = (TARGETS[[0, 1]] + TARGETS[[1, 1]]) > 0               # union per context
    expected = np.empty((rows.size, 3))
    for k in range(2):
        w = W.copy()
        w[:, targeted[k]] = 0.0                                      # mechanisms replaced
        e = np.where(targeted[k], shifts[k], BIAS) + noise[rows == k]
        expected[rows == k] = solve(e, w)
    np.testing.assert_allclose(both.x, expected, rtol=0, atol=ATOL)
    assert targeted[0].tolist() == [False, True, True]  # x1 from both, x2 from the second
