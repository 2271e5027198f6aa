"""Recovery on the default synthetic benchmark (d = 10, linear, ER), 30 000 Adam steps at 1e-3.

The issue's goals: target AUROC >= 0.95 on training perturbations and >= 0.85 on unseen ones,
and full-OOD mean error below half of the control prediction's. The first two are asserted.
The third is not met (see README, "Status"); what is asserted is that the GIM beats the
control prediction on both OOD splits and halves it on new doses of known perturbations.
"""

import jax
import pytest

import gim_ppl
from gim_ppl.evaluation.protocol import evaluate_gim


@pytest.mark.slow
def test_exact_gim_recovers_targets_on_default_benchmark():
    bench = gim_ppl.datasets.synthetic_hill(0)
    model = gim_ppl.GIM(10, 10)
    res = gim_ppl.fit(model, bench.train, steps=30_000, key=jax.random.key(0), progress=False)
    assert res.message == ""
    s = evaluate_gim(model, res.sites, bench, key=jax.random.key(1))
    assert s["target_auroc_train_posterior"] >= 0.95
    assert s["target_auroc_full_ood"] >= 0.85
    assert s["mean_error_partial_ood"] < 0.5 * s["mean_error_partial_ood_control"]
    assert s["mean_error_full_ood"] < s["mean_error_full_ood_control"]
