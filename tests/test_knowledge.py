"""`allowed_edges`: background knowledge (sources, non-edges, tiers) as an edge mask."""

import numpy as np
import pytest

import gim_ppl

NAMES = ["a", "b", "c", "d"]


def test_sources_forbid_and_tiers_remove_exactly_their_edges():
    mask = gim_ppl.allowed_edges(NAMES, sources=["a"], forbid=[("c", "d")],
                                 tiers=[["b"], ["c", "d"]])
    expected = ~np.eye(4, dtype=bool)
    expected[:, 0] = False          # nothing causes the source a
    expected[2, 3] = False          # c → d forbidden
    expected[2, 1] = expected[3, 1] = False  # tier 2 (c, d) never causes tier 1 (b)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(gim_ppl.allowed_edges(NAMES), ~np.eye(4, dtype=bool))


def test_a_mask_of_sources_is_what_the_model_uses():
    # Weights into a source are multiplied by zero: the source's fitted mean is its bias.
    mask = gim_ppl.allowed_edges(NAMES, sources=["b"])
    model = gim_ppl.GIM(4, 2, edge_mask=mask)
    w = model.scm_weights(np.ones((4, 4)))
    np.testing.assert_array_equal(np.asarray(w)[:, 1], 0.0)
    assert np.asarray(w)[0, 2] == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(sources=["bb"]), r"sources: unknown variable 'bb' \(closest: 'b'\)"),
    (dict(forbid=[("a", "zz")]), "forbid: unknown variable 'zz'"),
    (dict(forbid=["ab"]), r"forbid: expected \(parent, child\) pairs"),
    (dict(tiers=[["a"], ["a", "b"]]), "tiers: variable 'a' is in more than one tier"),
])
def test_bad_knowledge_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gim_ppl.allowed_edges(NAMES, **kwargs)
