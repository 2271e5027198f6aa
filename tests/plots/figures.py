"""Helpers of the figure tests: fake posterior draws, and the artists a figure tagged."""

import numpy as np


def fake_draws(sites, n=12, scale=0.05, seed=0):
    """Fake posterior draws around a point: `(n, *shape)` per site."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in sites.items():
        v = np.asarray(v)
        noise = rng.normal(scale=scale, size=(n, *v.shape))
        out[k] = np.abs(v + noise) if k == "noise_scale" else v + noise
    return out


def by_gid(artists, gid):
    return [a for a in artists if a.get_gid() == gid]
