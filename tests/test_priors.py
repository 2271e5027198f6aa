"""`Priors`: a readable repr (the defaults visible without a notebook)."""

import numpy as np
import numpyro.distributions as dist

import gim_ppl
from gim_ppl.priors import describe_distribution


def test_repr_lists_every_field_with_its_distribution_and_parameters():
    text = repr(gim_ppl.Priors(bias=dist.Normal(1.5, 3.0)))
    lines = text.splitlines()
    assert lines[0] == "Priors(" and lines[-1] == ")"
    assert "    edge_weight=Laplace(0, 0.1)," in lines
    assert "    bias=Normal(1.5, 3)," in lines          # the user's value, not the default
    assert "    noise_scale=LogNormal(0, 1)," in lines  # a transformed family by its own name
    assert "    horseshoe_slab=InverseGamma(2, 8)," in lines
    assert len(lines) == len(gim_ppl.Priors.__dataclass_fields__) + 2
    assert "object at 0x" not in text


def test_describe_distribution_shows_arrays_by_shape_and_wrapped_bases():
    per_edge = describe_distribution(dist.Laplace(np.zeros((3, 3)), 0.1))
    assert per_edge.startswith("Laplace(loc=<array (3, 3)>")
    affine = dist.TransformedDistribution(dist.Normal(0.0, 1.0),
                                          dist.transforms.AffineTransform(0.0, 2.0))
    assert describe_distribution(affine) == ("TransformedDistribution(Normal(0, 1), "
                                             "1 transform(s))")


def test_the_default_priors_table_of_the_docs_is_the_code():
    """docs/method.md's table of default priors equals `Priors()` field by field."""
    import re

    from tests import ROOT

    text = (ROOT / "docs" / "method.md").read_text()
    pairs = re.findall(r"`(\w+)` \| ([A-Za-z]+\([^)]*\))", text)
    assert len(pairs) == 16
    priors = gim_ppl.Priors()
    for name, shown in pairs:
        assert describe_distribution(getattr(priors, name)) == shown.replace("−", "-"), name
