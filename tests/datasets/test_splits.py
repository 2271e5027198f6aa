"""`gim_ppl.datasets.splits` on any `PerturbationData`: the synthetic benchmark's contexts
(model-unit doses, no AnnData) and a hand-built container whose names are not in id order."""

import numpy as np
import pytest

from gim_ppl import PerturbationData
from gim_ppl.datasets import (
    DoseScale,
    center_on_controls,
    holdout_dose,
    holdout_highest_doses,
    holdout_perturbations,
    sciplex3_splits,
    shift_cells,
    synthetic_hill,
)


@pytest.fixture(scope="module")
def data():
    """Train contexts of a small synthetic benchmark: control + drug_00..02 at 0.5, 1, 2."""
    return synthetic_hill(0, n_vars=4, n_features=3, n_train_perturbations=3,
                          n_test_perturbations=2, train_doses=(0.5, 1.0, 2.0),
                          partial_ood_doses=(0.75,), n_cells=5, n_test_cells=5,
                          n_observational=20).train


def _cells_of(data, name):
    k = data.context_names.index(name)
    return np.asarray(data.x)[np.asarray(data.context) == k]


def test_holdout_dose_on_synthetic_contexts(data):
    train, test = holdout_dose(data, "drug_01", 1.0)
    assert test.context_names == ("drug_01@1",)
    assert train.context_names == tuple(n for n in data.context_names if n != "drug_01@1")
    assert train.n_cells + test.n_cells == data.n_cells
    np.testing.assert_array_equal(np.asarray(test.x), _cells_of(data, "drug_01@1"))
    np.testing.assert_array_equal(np.asarray(test.perturbation), [1])
    # the same context by its dose in a user unit (1 model unit = 1000 nM)
    _, by_unit = holdout_dose(data, "drug_01", 1000.0, dose_scale=DoseScale("nM", 1000.0))
    assert by_unit.context_names == ("drug_01@1",)
    with pytest.raises(ValueError, match=r"'drug_01' has no context at dose 0.75; its doses: "
                                         r"\[0.5, 1.0, 2.0\]"):
        holdout_dose(data, "drug_01", 0.75)
    with pytest.raises(KeyError, match=r"perturbation 'aspirin' is not in the data"):
        holdout_dose(data, "aspirin", 1.0)


def test_holdout_dose_takes_the_unit_the_data_carries(data):
    """Data that carries a dose scale (as from `from_anndata`) takes doses in its unit."""
    in_nm = data.replace(dose_scale=DoseScale("nM", 1000.0))
    _, test = holdout_dose(in_nm, "drug_01", 1000.0)
    assert test.context_names == ("drug_01@1",) and test.dose_scale == in_nm.dose_scale
    _, test = holdout_dose(in_nm, "drug_01", 1.0, dose_scale=DoseScale.model_units())
    assert test.context_names == ("drug_01@1",)
    with pytest.raises(ValueError, match=r"'drug_01' has no context at dose 1.0 nM; its doses: "
                                         r"\[500.0, 1000.0, 2000.0\] nM"):
        holdout_dose(in_nm, "drug_01", 1.0)


def test_holdout_perturbations_and_highest_doses_on_synthetic_contexts(data):
    train, test = holdout_perturbations(data, "drug_02")
    assert test.context_names == ("drug_02@0.5", "drug_02@1", "drug_02@2")
    assert not any(n.startswith("drug_02") for n in train.context_names)
    assert "control" in train.context_names
    train, test = holdout_highest_doses(data)
    assert test.context_names == ("drug_00@2", "drug_01@2", "drug_02@2")
    assert train.n_contexts == data.n_contexts - 3
    assert train.n_cells + test.n_cells == data.n_cells
    with pytest.raises(ValueError, match="names is empty"):
        holdout_perturbations(data, [])
    with pytest.raises(ValueError, match="no perturbational contexts"):
        holdout_highest_doses(data.subset(np.asarray(data.observational)))


def test_sciplex3_splits_follow_perturbation_names_not_ids():
    # two perturbations whose names sort opposite to their ids, two doses each
    rng = np.random.default_rng(0)
    pert = np.array([-1, 0, 0, 1, 1])
    ctx = np.repeat(np.arange(5), 3)
    data = PerturbationData.from_arrays(
        rng.normal(size=(15, 2)), ctx, features=np.eye(3)[[0, 1, 1, 2, 2]],
        dose=[0.0, 1.0, 3.0, 2.0, 4.0], observational=pert < 0, perturbation=pert,
        perturbation_names=["zeta", "alpha"])
    pairs = list(sciplex3_splits(data))
    assert [test.context_names for _, test in pairs] == [("context_4",), ("context_2",)]
    for train, test in pairs:
        assert train.n_contexts == 4 and train.n_cells + test.n_cells == data.n_cells
    with pytest.raises(ValueError, match="no perturbational contexts"):
        list(sciplex3_splits(data.subset([0])))


def test_centring_on_synthetic_controls(data):
    centred, offset = center_on_controls(data)
    np.testing.assert_allclose(offset, data.control_cells().mean(0), rtol=1e-6)
    obs = np.asarray(data.observational)
    np.testing.assert_allclose(centred.context_means()[obs], 0.0, atol=1e-5)
    # every other context moves by the same offset; names and contexts are kept
    np.testing.assert_allclose(centred.context_means(), data.context_means() - offset,
                               atol=1e-5)
    assert centred.context_names == data.context_names and centred.context is data.context
    np.testing.assert_allclose(np.asarray(shift_cells(centred, offset).x), np.asarray(data.x),
                               atol=1e-5)
    with pytest.raises(ValueError, match="no control"):
        center_on_controls(data.subset(~obs))
    with pytest.raises(ValueError, match="needs cells"):
        center_on_controls(data.contexts_only())
    with pytest.raises(ValueError, match=r"offset must have shape \(4,\)"):
        shift_cells(data, np.zeros(3))
