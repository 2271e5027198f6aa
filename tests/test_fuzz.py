"""Fuzzed inputs at the public entry points.

Property, for every call: it returns finite output, or raises ValueError/TypeError whose
message names the argument that is wrong — never a raw NumPy/JAX error (IndexError,
FloatingPointError, XlaRuntimeError, ...), never a silent NaN or inf, and never a change
to the caller's arrays.

The inputs start from a valid call and break one or two arguments: NaN/inf, huge values,
negative doses, out-of-range contexts, wrong ranks and shapes, empty arrays, wrong dtypes
and wrong types. An error must name a broken argument as a word (a dose message that lost
the word "dose" once passed, because "x" and "context" matched inside other words).
200 derandomised examples per entry point; `predict` gets 50 because every
valid call traces a `Predictive` pass (~0.3 s), and `fit` stops at the first SVI
construction (all of fit's validation comes before it) so that no example compiles a fit.
"""

import copy
import importlib
import re
import warnings
from collections import Counter

import hypothesis.extra.numpy as npst
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gim_ppl
from gim_ppl import GIM, ArgumentError, PerturbationData
from gim_ppl.evaluation import metrics
from tests._problems import random_sites, small_data

steps_module = importlib.import_module("gim_ppl.inference.steps")

FUZZ = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                print_blob=True, suppress_health_check=list(HealthCheck))
FUZZ_COMPILING = settings(FUZZ, max_examples=50)

#: (entry point, outcome) → calls: "finite" or the exception type; printed at the end of
#: the module (pytest -s) to report how many calls took each path.
OUTCOMES: Counter = Counter()

SPECIAL = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e308, -1e308, 1e39, 0.5, 2.0, 7.0, -3.0]

# --- what every call must satisfy ------------------------------------------------------------


def _snapshot(value):
    """Deep copy of the array-holding parts of an input, for the no-mutation check."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return copy.deepcopy(value)
    return value


def _unchanged(before, after) -> bool:
    if isinstance(before, np.ndarray):
        return (isinstance(after, np.ndarray) and before.dtype == after.dtype
                and before.shape == after.shape
                and np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"))
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_unchanged(before[k], after[k])
                                                     for k in before)
    if isinstance(before, list):
        return len(before) == len(after) and all(
            _unchanged(np.asarray(b), np.asarray(a)) if isinstance(b, (list, np.ndarray))
            else (b == a or (b != b and a != a)) for b, a in zip(before, after, strict=True))
    return True


def _assert_finite(out, what):
    leaves = jax.tree_util.tree_leaves(out)
    for leaf in leaves:
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc":
            assert np.isfinite(arr).all(), f"{what} returned non-finite values"


def check_call(what, call, inputs: dict, names):
    """Run `call()`; assert the property of this module. `inputs` are the caller's objects
    (checked unchanged), `names` the argument names an error message may name."""
    before = {k: _snapshot(v) for k, v in inputs.items()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = call()
    except (ValueError, TypeError) as err:
        message = str(err)
        # the name as a word: "x" inside "index" or "context" does not count
        assert any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message)
                   for n in names), (
            f"{what}: {type(err).__name__} does not name the argument {sorted(names)}: "
            f"{message!r}")
        # jax's own errors subclass these (e.g. a traced shape error); they name no argument.
        # Ours are builtins, or an ArgumentError that names the argument as data too.
        if isinstance(err, ArgumentError):
            assert err.argument in names, f"{what}: .argument {err.argument!r}: {message}"
        else:
            assert type(err).__module__ == "builtins", f"{what}: raw {type(err)}: {message}"
        OUTCOMES[what, "TypeError" if isinstance(err, TypeError) else "ValueError"] += 1
        out = None
    else:
        _assert_finite(out, what)
        OUTCOMES[what, "finite"] += 1
    for k, v in inputs.items():
        assert _unchanged(before[k], v), f"{what} modified its input {k!r}"
    return out


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    yield
    for (what, outcome), n in sorted(OUTCOMES.items()):
        print(f"fuzz {what:24s} {outcome:32s} {n:5d}")


# --- strategies --------------------------------------------------------------------------------

ANY_ARRAY = npst.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_]),
    shape=npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    elements={"allow_nan": True, "allow_infinity": True}, fill=st.nothing())
# Sizes stay small: a valid GIM(n_vars=1e6) or fit(steps=1e9) is not an error, only big.
WEIRD_SCALAR = st.one_of(
    st.integers(-3, 6), st.floats(-1e3, 1e3), st.sampled_from([np.nan, np.inf, -np.inf]),
    st.booleans(), st.none(), st.text(max_size=3),
    st.sampled_from([1.5, 1e3, -1e-9, "1", [1], (2,), np.float32(2.0), np.int64(3)]))


@st.composite
def corrupted(draw, value):
    """`value` (an array) broken in one way, or replaced by something else entirely."""
    arr = np.asarray(value)
    kind = draw(st.sampled_from(["special", "special", "shape", "empty", "dtype", "any",
                                 "scalar", "list"]))
    if kind == "special" and arr.size:
        out = arr.astype(float) if arr.dtype.kind in "biu" else arr.copy()
        idx = draw(st.integers(0, arr.size - 1))
        with np.errstate(over="ignore"):  # 1e308 into float32 is inf: also worth trying
            out.flat[idx] = draw(st.sampled_from(SPECIAL))
        return out
    if kind == "shape":
        return draw(st.sampled_from([arr[None], arr.T, arr.ravel(), arr[..., :1],
                                     arr[:1] if arr.ndim else arr, np.stack([arr, arr], -1)]))
    if kind == "empty":
        return arr[:0] if arr.ndim else np.zeros(0)
    if kind == "dtype":
        return draw(st.sampled_from([arr.astype(bool), arr.astype(np.int8),
                                     arr.astype(str), arr.astype(np.float16),
                                     arr.astype(complex)]))
    if kind == "list":
        return arr.tolist()
    if kind == "scalar":
        return draw(WEIRD_SCALAR)
    return draw(ANY_ARRAY)


def _valid_arrays():
    rng = np.random.default_rng(0)
    k = 4
    return dict(
        x=rng.normal(size=(10, 3)),
        context=np.arange(10) % k,
        features=rng.normal(size=(k, 2)),
        dose=np.array([0.0, 0.5, 1.0, 2.0]),
        observational=np.arange(k) == 0,
        perturbation=np.array([-1, 0, 1, 1]),
    )


ARRAY_ARGS = ["x", "context", "features", "dose", "observational", "perturbation"]
_CELLS, _CONTEXTS = {"x", "context"}, {"features", "dose", "observational", "perturbation"}
PARTNERS = {a: (_CELLS | {"observational"} if a in _CELLS else _CONTEXTS | {"context"})
            for a in ARRAY_ARGS}


@st.composite
def from_arrays_inputs(draw):
    kw = _valid_arrays()
    broken = draw(st.lists(st.sampled_from(ARRAY_ARGS), min_size=1, max_size=2, unique=True))
    for name in broken:
        kw[name] = draw(corrupted(kw[name]))
    if draw(st.booleans()):
        kw["perturbation"] = None
    return kw, broken


# --- PerturbationData.from_arrays ----------------------------------------------------------


@FUZZ
@given(from_arrays_inputs())
def test_from_arrays_validates_or_builds_finite_data(case):
    kw, _ = case
    x, ctx = kw.pop("x"), kw.pop("context")
    inputs = dict(x=x, context=ctx, **kw)
    # a mismatch may be reported on the other array of its group (the cells: x and context;
    # the contexts: features, dose, observational, perturbation): a broken argument's own
    # name or a partner's, as a word
    # — unless every broken array kept its valid shape (a NaN, a negative dose, another
    # dtype): then nothing is mismatched and the message must name a broken argument itself
    # (kills mutants `dose_message_without_dose` and `dose_message_names_features`)
    valid = _valid_arrays()
    same_shape = all(isinstance(inputs[b], np.ndarray) and inputs[b].shape == valid[b].shape
                     for b in case[1])
    names = set(case[1]) if same_shape else set().union(*(PARTNERS[b] for b in case[1]))
    data = check_call("from_arrays", lambda: PerturbationData.from_arrays(x, ctx, **kw),
                      inputs, names)
    if data is not None:
        assert data.x.shape[0] == data.context.shape[0] == np.asarray(x).shape[0]
        assert np.all((np.asarray(data.context) >= 0)
                      & (np.asarray(data.context) < data.n_contexts))
        assert np.all(np.asarray(data.dose) >= 0)


VALUE_BREAKS = [("x", (2, 1), np.nan), ("x", (0, 0), 1e39), ("context", 3, 99),
                ("context", 3, -1), ("context", 3, 0.5), ("features", (1, 0), np.inf),
                ("dose", 2, np.nan), ("dose", 2, np.inf), ("dose", 2, -0.5),
                ("observational", 1, 2), ("perturbation", 2, 0.5), ("perturbation", 2, -1)]


@pytest.mark.parametrize("name, index, value", VALUE_BREAKS)
def test_a_broken_value_is_named_by_its_own_argument(name, index, value):
    """Every array keeps its valid shape and one entry goes bad: nothing is mismatched, so
    the error must name that argument itself, as a word (not a partner, not "contexts").
    Deterministic companion of the fuzz test, whose derandomised examples change with its
    source. Kills mutants `dose_message_without_dose`, `dose_nonfinite_message_without_dose`
    and `dose_message_names_features` (dev/mutants.py)."""
    kw = _valid_arrays()
    arr = kw[name].astype(type(value)) if isinstance(value, float) else kw[name].copy()
    if name == "observational":
        arr = arr.astype(np.int64)
    arr[index] = value
    kw[name] = arr
    x, ctx = kw.pop("x"), kw.pop("context")
    with pytest.raises((ValueError, TypeError)) as err:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            PerturbationData.from_arrays(x, ctx, **kw)
    assert re.search(rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])", str(err.value)), (
        str(err.value))


# --- GIM(...) ------------------------------------------------------------------------------

GIM_ARGS = {
    "n_vars": 3, "n_features": 2, "mechanism": "linear", "marginal": "exact",
    "intervention_map": "linear", "intervention_effect": "shift", "hidden": 4,
    "acyclicity": "spectral", "acyclicity_weight": 10.0, "power_iterations": None,
    "target_sparsity": 1.0, "temperature": 0.25, "n_mc": 8, "shared_targets": False,
    "pooled": None, "shrinkage": None,
}
NAMES = st.sampled_from(["linear", "mlp", "gp", "exact", "relaxed_mc", "shift", "replace",
                         "spectral", "notears", "ard", "horseshoe", ""])


@FUZZ
@given(st.lists(st.sampled_from(list(GIM_ARGS)), min_size=1, max_size=3, unique=True),
       st.data())
def test_gim_constructor_validates_its_arguments(broken, data):
    kw = dict(GIM_ARGS)
    for name in broken:
        kw[name] = data.draw(st.one_of(WEIRD_SCALAR, NAMES, st.lists(st.text(max_size=2),
                                                                     max_size=2)), label=name)
    n_vars, n_features = kw.pop("n_vars"), kw.pop("n_features")
    model = check_call("GIM", lambda: GIM(n_vars, n_features, **kw), {},
                       set(broken) | {"map_anchors"} if kw["intervention_map"] == "gp"
                       else set(broken))
    if model is not None:
        assert model.n_vars >= 1 and model.n_features >= 1
        assert model.temperature > 0 and np.isfinite(model.temperature)
        assert np.isfinite(model.acyclicity_weight) and np.isfinite(model.target_sparsity)


# --- fit(...) arguments --------------------------------------------------------------------


class _Reached(Exception):
    """All of fit's validation passed (raised where the SVI objects are built)."""


FIT_ARGS = {"steps": 5, "batch_size": None, "restarts": 1, "validation": None,
            "target_sparsity": None, "acyclicity_weight": None, "hooks": (),
            "optimizer": None, "every": None, "devices": None}


@pytest.fixture(scope="module")
def fit_problem():
    return GIM(3, 2), small_data()


def _fit_call(model, train, tmp_path, kw):
    """`fit` with the drawn arguments, the values built inside the call: `validation` in a
    `RestartSelection`, `every` in a `Checkpointing` hook, `devices` in `Sharded`."""
    kw = dict(kw)
    validation, every, devices = kw.pop("validation"), kw.pop("every"), kw.pop("devices")
    if validation is not None:
        kw["restarts"] = gim_ppl.RestartSelection(kw["restarts"], validation)
    if every is not None:
        kw["hooks"] = [gim_ppl.Checkpointing(tmp_path / "fit.ckpt", every=every)]
    if devices is not None:
        kw["batch_size"] = gim_ppl.Sharded(devices)
    return gim_ppl.fit(model, train, key=jax.random.key(0), progress=False, **kw)


@FUZZ
@given(st.lists(st.sampled_from(list(FIT_ARGS)), min_size=1, max_size=2, unique=True),
       st.data())
def test_fit_validates_its_arguments_before_computing(fit_problem, monkeypatch, tmp_path,
                                                      broken, data):
    model, train = fit_problem
    kw = dict(FIT_ARGS)
    for name in broken:
        kw[name] = data.draw(WEIRD_SCALAR, label=name)

    def stop(*args, **kwargs):
        raise _Reached

    with monkeypatch.context() as m:
        m.setattr(steps_module, "SVI", stop)
        try:
            check_call("fit", lambda: _fit_call(model, train, tmp_path, kw),
                       {}, set(broken) | ({"validation"} if "restarts" in broken else set()))
        except _Reached:
            OUTCOMES["fit", "validated, stopped before SVI"] += 1


# --- read-offs and predict -----------------------------------------------------------------

READOFFS = ["target_probabilities", "posterior_targets", "hill_parameters",
            "intervention_outputs", "log_likelihood", "graph", "edge_weights"]


@pytest.fixture(scope="module")
def readoff_problem():
    model = GIM(2, 1)
    data = small_data(d=2, p=1, n_pert=2, doses=(1.0,), n_cells=3, n_obs=3)
    return model, data, {k: np.asarray(v) for k, v in random_sites(model).items()}


@st.composite
def corrupted_sites(draw, sites):
    out = dict(sites)
    # half the examples keep valid sites, so the finite path is exercised too
    kind = draw(st.sampled_from(["value", "value", "array", "missing", "draws", "type",
                                 "valid", "valid", "valid", "valid", "valid", "valid"]))
    name = draw(st.sampled_from(sorted(sites)))
    if kind == "value":
        out[name] = draw(corrupted(sites[name]))
    elif kind == "array":
        out[name] = draw(ANY_ARRAY)
    elif kind == "missing":
        del out[name]
    elif kind == "draws":  # a leading draw axis of 2 on every site, one value special
        out = {k: np.stack([v, v]) for k, v in sites.items()}
        out[name] = out[name].copy()
        out[name].flat[0] = draw(st.sampled_from([*SPECIAL[:3], 0.1]))
    elif kind == "type":
        return draw(st.sampled_from([None, [1, 2], "sites", np.zeros(3)]))
    return out


def _contexts(draw, data):
    return draw(st.sampled_from([data] * 8 + [data.contexts_only(), None,
                                              small_data(d=3, p=1), small_data(d=2, p=2),
                                              "data"]))


@st.composite
def _mostly(draw, valid):
    """About three in four examples valid, so that calls with one bad argument (and with
    none) are common; `st.one_of` leans towards the weird branch."""
    return draw(valid if draw(st.sampled_from([True, True, True, False])) else WEIRD_SCALAR)


@FUZZ
@given(st.sampled_from(READOFFS), st.data())
def test_readoffs_validate_sites_and_contexts(readoff_problem, readoff, data):
    model, train, sites = readoff_problem
    fuzzed = data.draw(corrupted_sites(sites), label="sites")
    contexts = _contexts(data.draw, train)
    threshold = data.draw(_mostly(st.just(0.3)), label="threshold")
    method = getattr(model, readoff)
    if readoff == "graph":
        call, names = (lambda: method(fuzzed, threshold)), {"sites", "threshold"}
    elif readoff == "edge_weights":
        call, names = (lambda: method(fuzzed)), {"sites"}
    else:
        call, names = (lambda: method(fuzzed, contexts)), {"sites", "data", "contexts"}
    check_call(readoff, call, {"sites": fuzzed}, names)


@FUZZ_COMPILING
@given(st.data())
def test_predict_validates_its_arguments(readoff_problem, data):
    model, train, sites = readoff_problem
    fuzzed = data.draw(corrupted_sites(sites), label="sites")
    contexts = _contexts(data.draw, train)
    n_cells = data.draw(_mostly(st.integers(1, 3)), label="n_cells")
    mode = data.draw(_mostly(st.sampled_from(["mixture", "threshold"])), label="mode")
    out = check_call("predict", lambda: model.predict(fuzzed, contexts, key=jax.random.key(0),
                                                      n_cells=n_cells, mode=mode),
                     {"sites": fuzzed}, {"sites", "data", "contexts", "n_cells", "mode"})
    if out is not None:
        assert out.x.shape == (contexts.n_contexts * int(n_cells), model.n_vars)


# --- metrics -------------------------------------------------------------------------------


@st.composite
def labels_and_scores(draw):
    n = draw(st.integers(0, 12))
    labels = draw(npst.arrays(np.bool_, n))
    scores = draw(npst.arrays(np.float64, n, elements=st.floats(0, 1)))
    broken = draw(st.sampled_from(["labels", "scores", "probs", "none"]))
    if broken == "labels":
        labels = draw(corrupted(labels))
    elif broken in ("scores", "probs"):
        scores = draw(corrupted(scores))
    return labels, scores


SCORES = {"auroc": "scores", "average_precision": "scores", "brier_score": "probs",
          "reliability_curve": "probs"}


@FUZZ
@given(st.sampled_from(sorted(SCORES)), labels_and_scores(),
       st.one_of(st.just(10), WEIRD_SCALAR))
def test_label_metrics_validate_their_arrays(name, case, n_bins):
    labels, scores = case
    fn = getattr(metrics, name)
    kw = {"n_bins": n_bins} if name == "reliability_curve" else {}
    check_call(name, lambda: fn(labels, scores, **kw), {"labels": labels, "scores": scores},
               {"labels", SCORES[name], "n_bins"})


@FUZZ
@given(st.data())
def test_shd_validates_adjacency_matrices(data):
    rng = np.random.default_rng(0)
    a = rng.random((3, 3)) < 0.4
    b = rng.random((3, 3)) < 0.4
    if data.draw(st.booleans(), label="break true"):
        a = data.draw(corrupted(a), label="true_adjacency")
    if data.draw(st.booleans(), label="break estimated"):
        b = data.draw(corrupted(b), label="estimated_adjacency")
    out = check_call("shd", lambda: metrics.shd(a, b), {"a": a, "b": b},
                     {"true_adjacency", "estimated_adjacency"})
    if out is not None:
        assert 0 <= out <= 3


@FUZZ
@given(st.sampled_from(["mean_error", "r2_mean_change"]), st.data())
def test_cell_metrics_validate_their_data(name, data):
    observed = small_data(d=2, p=1, n_pert=2, doses=(1.0,), n_cells=3, n_obs=3)
    predicted = data.draw(st.sampled_from([observed, observed.contexts_only(), None, "cells",
                                           small_data(d=3, p=1), small_data(d=2, p=1,
                                                                            n_pert=1)]))
    control = data.draw(st.one_of(st.just(np.zeros(2)), corrupted(np.zeros(2))))
    top_k = data.draw(st.one_of(st.none(), WEIRD_SCALAR))
    fn = getattr(metrics, name)
    if name == "mean_error":
        call = lambda: fn(predicted, observed)  # noqa: E731
    else:
        call = lambda: fn(predicted, observed, control, top_k=top_k)  # noqa: E731
    check_call(name, call, {"control_mean": control},
               {"predicted", "observed", "control_mean", "top_k"})
