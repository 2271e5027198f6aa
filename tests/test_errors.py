"""`gim_ppl.ArgumentError`: a bad argument is named as data (`.argument`, and `.rows` where
the message lists rows), through the public API; it stays a ValueError (TypeError, KeyError)
with its message; and the command line finds the flag from `.argument`, not from the prose."""

import pickle

import jax
import numpy as np
import pytest

import gim_ppl
from gim_ppl import ArgumentError, PerturbationData
from gim_ppl.cli.user_errors import FLAGS, cli_message
from gim_ppl.errors import ArgumentKeyError, ArgumentTypeError
from tests._problems import small_data

CONTEXTS = dict(features=[[0.0], [1.0], [2.0]], dose=[0.0, 1.0, 1.0],
                observational=[True, False, False])
CELLS = dict(x=np.zeros((3, 2)), context=[0, 1, 2])


def _raised(call) -> ArgumentError:
    with pytest.raises(ArgumentError) as err:
        call()
    return err.value


@pytest.mark.parametrize("call, argument, rows, kind", [
    (lambda: PerturbationData.from_arrays(**CELLS, **CONTEXTS | {"dose": [0.0, -1.0, 2.0]}),
     "dose", (1,), ValueError),
    (lambda: PerturbationData.from_arrays(**CONTEXTS, x=[[0, 0], [np.nan, 0], [0, 0]],
                                          context=[0, 1, 2]), "x", (1,), ValueError),
    (lambda: PerturbationData.from_arrays(**CONTEXTS, x=np.zeros((3, 2)), context=[0, 1, 5]),
     "context", (2,), ValueError),
    (lambda: PerturbationData.from_arrays(**CELLS, **CONTEXTS | {"observational": "yes"}),
     "observational", None, TypeError),
    (lambda: gim_ppl.GIM(0, 2), "n_vars", None, ValueError),
    (lambda: gim_ppl.GIM(3, "2"), "n_features", None, TypeError),
    (lambda: gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=5, key=jax.random.key(0),
                         batch_size=0), "batch_size", None, ValueError),
    (lambda: gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=5, key=jax.random.key(0),
                         target_sparsity=-1.0), "target_sparsity", None, ValueError),
    (lambda: gim_ppl.allowed_edges(["a", "b"], sources=["c"]), "sources", None, ValueError),
])
def test_bad_arguments_are_named_as_data(call, argument, rows, kind):
    err = _raised(call)
    assert err.argument == argument
    assert err.rows == rows
    assert isinstance(err, kind) and isinstance(err, ValueError)
    assert argument in str(err)  # and the message still names it


def test_obs_keys_of_from_anndata_are_named():
    anndata = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    obs = pd.DataFrame({"drug": ["ctl", "a", "a"], "dose": [0.0, 1.0, 2.0]})
    adata = anndata.AnnData(X=np.ones((3, 2)), obs=obs)
    kw = dict(perturbation_key="drug", dose_key="dose", control="ctl", features="onehot")
    err = _raised(lambda: gim_ppl.datasets.from_anndata(adata, **kw | {"dose_key": "conc"}))
    assert err.argument == "dose_key" and isinstance(err, KeyError)
    assert str(err).startswith("dose_key='conc' is not an obs column")  # no KeyError quotes
    assert _raised(lambda: gim_ppl.datasets.from_anndata(
        adata, **kw | {"control": "DMSO"})).argument == "control"
    assert _raised(lambda: gim_ppl.datasets.from_anndata(
        adata, **kw | {"genes": ["G1"]})).argument == "genes"


def test_subclasses_and_pickling_keep_the_argument():
    for cls, base in ((ArgumentError, ValueError), (ArgumentTypeError, TypeError),
                      (ArgumentKeyError, KeyError)):
        err = cls("dose must be >= 0; negative at contexts [1]", argument="dose", rows=[1])
        assert isinstance(err, base) and isinstance(err, ArgumentError)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and (back.argument, back.rows) == ("dose", (1,))
        assert str(back) == str(err) == "dose must be >= 0; negative at contexts [1]"


def test_the_cli_names_the_flag_from_the_argument_not_the_prose():
    """Any wording of an error about `dose_key` names --dose-key: the flag comes from
    `err.argument` (rewording a message cannot break it); an error of an argument without a
    flag, or another exception, is shown as it is."""
    worded = ArgumentError("the doses column holds text; strip the units", argument="dose_key")
    assert cli_message(worded) == "--dose-key: the doses column holds text; strip the units"
    assert FLAGS["dose_key"] == "--dose-key"
    # the argument's own name=value / leading name become the flag
    assert cli_message(ArgumentKeyError("dose_key='conc' is not an obs column",
                                        argument="dose_key")) == \
        "--dose-key 'conc' is not an obs column"
    assert cli_message(ArgumentError("sources: unknown variable 'G1'", argument="sources")) \
        == "--sources unknown variable 'G1'"
    assert cli_message(ArgumentError("adata.X is None: pass layer=... naming it",
                                     argument="layer")) == \
        "adata.X is None: pass --layer ... naming it"
    # the same prose with another argument, or no argument at all, is left alone
    assert cli_message(ArgumentError("dose_key='conc' is odd", argument="features")) == \
        "dose_key='conc' is odd"
    assert cli_message(ValueError("dose_key='conc' is odd")) == "dose_key='conc' is odd"
    assert cli_message(KeyError("missing")) == "missing"
