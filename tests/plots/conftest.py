"""What the figure tests share: a short fit of a small synthetic benchmark (built once),
the Agg backend, and every figure closed after its test."""

import matplotlib

matplotlib.use("Agg")

import jax
import matplotlib.pyplot as plt
import optax
import pytest

import gim_ppl


@pytest.fixture(scope="package")
def fitted():
    """A small synthetic benchmark and a short MAP fit of it."""
    bench = gim_ppl.datasets.synthetic_hill(
        0, n_vars=4, n_features=3, n_train_perturbations=4, n_test_perturbations=2,
        train_doses=(0.5, 1.0, 2.0), partial_ood_doses=(0.75,), n_cells=20, n_test_cells=30,
        n_observational=80,
    )
    model = gim_ppl.GIM(4, 3)
    result = gim_ppl.fit(model, bench.train, steps=400, key=jax.random.key(0),
                         optimizer=optax.adam(1e-2), progress=False)
    return bench, model, result


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
