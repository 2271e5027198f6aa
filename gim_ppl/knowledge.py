"""Background knowledge on the graph as an edge mask (`GIM(..., edge_mask=...)`).

What a user knows about a system is the cheapest cure for misoriented edges, and misoriented
edges turn into wrong targets (an effect of a child read as a target of its parent). Three
kinds of knowledge, by variable name:

- `sources`: variables nothing measured causes (inputs, a stimulus, a set point): no edge
  into them;
- `forbid`: known non-edges `(parent, child)`;
- `tiers`: an ordering in groups, edges only within a tier or from an earlier tier to a
  later one (variables in no tier are unconstrained).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

from gim_ppl.errors import ArgumentError


def _index(var_names: Sequence[str], name, argument: str) -> int:
    names = [str(v) for v in var_names]
    if str(name) in names:
        return names.index(str(name))
    close = difflib.get_close_matches(str(name), names, n=1)
    hint = f" (closest: {close[0]!r})" if close else ""
    raise ArgumentError(f"{argument}: unknown variable {name!r}{hint}; the data's variables "
                        f"are {names[:20]}{' …' if len(names) > 20 else ''}", argument=argument)


def allowed_edges(var_names: Sequence[str], *, sources: Sequence[str] = (),
                  forbid: Sequence[tuple[str, str]] = (),
                  tiers: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """`(n_vars, n_vars)` bool mask, True where an edge i → j is allowed (no self-loops).

    Args:
        var_names: the variables, in the data's order (`data.var_names`).
        sources: names with no allowed parents.
        forbid: `(parent, child)` name pairs that are not edges.
        tiers: groups of names in causal order; an edge from a later tier into an earlier
            one is not allowed.
    Raises:
        ArgumentError (a ValueError) naming the argument (`.argument`: "sources", "forbid"
        or "tiers") and the closest variable for an unknown name, and for a tier list that
        names a variable twice.
    """
    d = len(var_names)
    mask = ~np.eye(d, dtype=bool)
    if isinstance(sources, str):
        sources = [sources]
    for name in sources:
        mask[:, _index(var_names, name, "sources")] = False
    for pair in forbid:
        if isinstance(pair, str) or len(pair) != 2:
            raise ArgumentError(f"forbid: expected (parent, child) pairs, got {pair!r}",
                                argument="forbid")
        parent, child = pair
        mask[_index(var_names, parent, "forbid"), _index(var_names, child, "forbid")] = False
    if tiers is not None:
        rank: dict[int, int] = {}
        for t, tier in enumerate(tiers):
            for name in [tier] if isinstance(tier, str) else tier:
                i = _index(var_names, name, "tiers")
                if i in rank:
                    raise ArgumentError(f"tiers: variable {name!r} is in more than one tier",
                                        argument="tiers")
                rank[i] = t
        for i, ti in rank.items():
            for j, tj in rank.items():
                if ti > tj:
                    mask[i, j] = False
    return mask
