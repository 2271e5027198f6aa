"""`Site`: how the model's sample sites are declared — once, by mechanisms and maps."""

from __future__ import annotations

from typing import NamedTuple


class Site(NamedTuple):
    """One sample site, declared once: its named axes (which give both its shape and its
    ArviZ dims), the `Priors` field that governs it and whether it must start at random.

    `random_init`: a hidden layer's input weights and biases, whose units must start apart
    to learn different features (symmetry breaking); every other site can start at a
    deterministic value (see `gim_ppl.inference.init_from_data`).

    `fan_in`: the `Priors` field is the prior of a weight times √(size of the first axis),
    i.e. the model divides it by √fan-in (Neal 1996), so the prior spread of the output the
    weights make does not grow with the number of inputs (features, hidden units).

    Axis names: "var" and "parent" (n_vars), "feature" (n_features), "hidden" (mechanism MLP
    width), "map_hidden" (intervention-map MLP width).
    """

    dims: tuple[str, ...]
    prior: str
    random_init: bool = False
    fan_in: bool = False


def site_shape(site: Site, sizes: dict[str, int]) -> tuple[int, ...]:
    """The shape of `site` given the size of every axis name."""
    return tuple(sizes[axis] for axis in site.dims)


__all__ = ["Site", "site_shape"]
