"""Checkpoints of `fit`: the loop state on disk, written atomically, with the settings that
must match for a resumed fit to continue the same run.

One `.npz` file per checkpoint: the leaves of the `FitState` pytree (`leaf_0`, `leaf_1`,
…; PRNG keys as their raw key data), the losses and the per-step schedule values so far,
and `header`, a JSON string: format, package version, steps done, total steps and the
settings (`CheckpointSettings`). It is written to a temporary file in the same directory
and moved over the old one with `os.replace`, so a process killed while writing leaves the
previous checkpoint whole (POSIX rename is atomic within a file system).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import numbers
import os
import tempfile
import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gim_ppl.data import PerturbationData

#: Version of the file layout; a reader refuses other versions (2: the model's settings
#: are every attribute of the GIM, `model_description`).
CHECKPOINT_FORMAT = 2


class Checkpoint(NamedTuple):
    """A checkpoint read back by `read_checkpoint`.

    Attributes:
        header: the JSON header: `format`, `version`, `steps_done`, `steps`, `message`,
            `alive` (one bool per restart) and `settings` (see `checkpoint_settings`).
        leaves: the `FitState` leaves as NumPy arrays (PRNG keys as key data), in
            `jax.tree_util` order.
        losses: `(steps_done, n_restarts)` losses of the steps done.
        target_sparsity, acyclicity_weight: `(steps_done,)` the β_I and λ schedule values
            used at the steps done.
    """

    header: dict
    leaves: list
    losses: np.ndarray
    target_sparsity: np.ndarray
    acyclicity_weight: np.ndarray


def package_version() -> str:
    """The installed gim_ppl version (what `gim_ppl.__version__` says, read from the
    package metadata: this module cannot import the top-level package)."""
    try:
        return importlib.metadata.version("gim_ppl")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def data_fingerprint(data: PerturbationData | None) -> str | None:
    """SHA-256 of the arrays (values, dtypes and shapes) and names of `data`; None for
    None. Two data sets with the same fingerprint fit identically."""
    if data is None:
        return None
    h = hashlib.sha256()
    for name in ("x", "context", "features", "dose", "observational", "perturbation"):
        value = getattr(data, name)
        if value is None:
            h.update(f"{name}:None;".encode())
            continue
        arr = np.ascontiguousarray(np.asarray(value))
        h.update(f"{name}:{arr.dtype.str}{arr.shape};".encode())
        h.update(arr.tobytes())
    h.update(json.dumps([data.var_names, data.context_names, data.feature_names,
                         data.perturbation_names]).encode())
    # moments change the likelihood's rounding, hence the run's bits
    h.update(f"moments:{data.moments is not None};".encode())
    return h.hexdigest()


def key_fingerprint(key) -> str:
    """SHA-256 of a PRNG key's data (new-style `jax.random.key` or raw `PRNGKey`)."""
    if jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    arr = np.ascontiguousarray(np.asarray(key))
    return hashlib.sha256(arr.dtype.str.encode() + arr.tobytes()).hexdigest()


def describe(value: Any):
    """A JSON-able description of a setting: numbers, strings and containers as they are,
    arrays as lists, NumPyro distributions as their class and parameters, dataclasses and
    NamedTuples field by field, anything else by its type name (so closures such as optax
    transformations are described only by their kind)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Real):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(value, (np.ndarray, jnp.ndarray)):
        return np.asarray(value).tolist()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
        return {"type": type(value).__name__,
                **{f: describe(getattr(value, f)) for f in value._fields}}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in sorted(value.items())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__,
                **{f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, functools.partial):
        return {"type": "partial", "func": describe(value.func),
                "args": describe(list(value.args)), "keywords": describe(value.keywords)}
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType):
        return {"type": "function",
                "name": f"{value.__module__}.{value.__qualname__}"}
    params = getattr(value, "arg_constraints", None)
    if isinstance(params, dict):  # a numpyro Distribution
        return {"type": type(value).__name__,
                **{k: describe(getattr(value, k)) for k in sorted(params) if hasattr(value, k)}}
    return {"type": type(value).__name__}


#: A setting whose description is longer than this (in JSON) is recorded by its SHA-256.
_SHOWN_CHARS = 200


def model_description(model) -> dict:
    """Every setting of a `GIM`, read off the value, not listed by hand: one entry per
    dataclass field (a setting added to the class is covered by being a field), each
    `describe`d (arrays by their values,
    priors by their distributions and parameters, functions by their qualified names, a
    `functools.partial` by its function and arguments). An entry whose description is longer
    than `_SHOWN_CHARS` characters (an edge mask, the priors of every site) is recorded as
    `"sha256:..."` of its JSON, so the header stays small and a change in one value still
    changes it. Fields come in declaration order, the settings a user gives before the
    components derived from them, so that `check_settings` names the setting the user
    changed (`pooled`) before what follows from it (`site_specs`)."""
    out = {}
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        text = json.dumps(describe(value), sort_keys=True)
        out[field.name] = (json.loads(text) if len(text) <= _SHOWN_CHARS
                     else "sha256:" + hashlib.sha256(text.encode()).hexdigest())
    return out


def leaf_spec(leaves) -> list:
    """Shape and dtype of each state leaf (`"key<impl>"` for PRNG keys)."""
    return [[list(np.shape(leaf)), str(jnp.asarray(leaf).dtype)] for leaf in leaves]


def write_checkpoint(path, state, *, header: dict, losses, target_sparsity,
                     acyclicity_weight) -> None:
    """Write `state` (a pytree) and `header` to `path` atomically (temporary file in the
    same directory, then `os.replace`).

    Args:
        path: the checkpoint file (`.npz` content whatever its name).
        state: the `FitState` to save; its leaves are copied to the host.
        header: JSON-able dict (`read_checkpoint` returns it).
        losses: `(steps_done, n_restarts)` losses so far.
        target_sparsity, acyclicity_weight: `(steps_done,)` schedule values used so far.
    """
    arrays = {}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(state)):
        leaf = jnp.asarray(leaf)
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)  # typed keys have no NumPy dtype
        arrays[f"leaf_{i}"] = np.asarray(jax.device_get(leaf))
    arrays["losses"] = np.asarray(losses)
    arrays["target_sparsity"] = np.asarray(target_sparsity)
    arrays["acyclicity_weight"] = np.asarray(acyclicity_weight)
    arrays["header"] = np.asarray(json.dumps(header))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the data must be on disk before the rename makes it current
        _commit(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _commit(tmp: str, path: str) -> None:
    """Make the fully written `tmp` the checkpoint (atomic; a separate function so that
    tests can stop a writer between writing and committing)."""
    os.replace(tmp, path)


def read_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by `fit(..., checkpoint=path)`.

    Raises:
        ValueError: `path` is missing, not a checkpoint, or of another format.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"resume: no checkpoint file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            header = json.loads(str(f["header"]))
            n = sum(1 for k in f.files if k.startswith("leaf_"))
            leaves = [f[f"leaf_{i}"] for i in range(n)]
            losses, beta, lam = f["losses"], f["target_sparsity"], f["acyclicity_weight"]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"resume: {path!r} is not a gim_ppl fit checkpoint ({err})") from err
    if header.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"resume: {path!r} has checkpoint format {header.get('format')!r}, "
                         f"this version reads format {CHECKPOINT_FORMAT}")
    return Checkpoint(header, leaves, losses, beta, lam)


def restore_state(template, leaves: list):
    """The pytree `template` with its leaves replaced by the saved `leaves` (PRNG keys
    re-wrapped with the template's key implementation).

    Raises:
        ValueError: the saved leaves differ in number, shape or dtype from the template's
            (another guide, optimizer or model).
    """
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(t_leaves) != len(leaves):
        raise ValueError(f"resume: the checkpoint holds {len(leaves)} state arrays, this fit "
                         f"{len(t_leaves)}: another guide or optimizer")
    out = []
    for i, (t, saved) in enumerate(zip(t_leaves, leaves, strict=True)):
        t = jnp.asarray(t)
        if jax.dtypes.issubdtype(t.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(jnp.asarray(saved), impl=jax.random.key_impl(t))
        else:
            value = jnp.asarray(saved, dtype=t.dtype)
            if saved.dtype != t.dtype:
                raise ValueError(f"resume: state array {i} was saved as {saved.dtype}, this fit "
                                 f"has {t.dtype} (float64 enabled in one and not the other?)")
        if value.shape != t.shape:
            raise ValueError(f"resume: state array {i} has shape {tuple(value.shape)} in the "
                             f"checkpoint, {tuple(t.shape)} in this fit: another guide or "
                             "optimizer")
        out.append(value)
    return jax.tree_util.tree_unflatten(treedef, out)


def check_settings(path, saved: dict, current: dict) -> None:
    """Raise a ValueError naming the first setting in which `current` differs from the
    checkpoint's `saved` settings (for a dict setting such as the model's, the entry:
    `model.edge_mask`)."""
    current = json.loads(json.dumps(current))  # tuples as lists, as the header has them
    for name, value in current.items():
        if name not in saved:
            raise ValueError(f"resume: checkpoint {path!r} does not record {name}")
        was = saved[name]
        if was != value:
            if isinstance(value, dict) and isinstance(was, dict):
                key = next(k for k in [*value, *(k for k in was if k not in value)]
                           if was.get(k, "absent") != value.get(k, "absent"))
                name, was, value = f"{name}.{key}", was.get(key, "absent"), \
                    value.get(key, "absent")
            raise ValueError(
                f"resume: checkpoint {path!r} was written with other {name}: "
                f"{_short(was)} in the checkpoint, {_short(value)} now; resume with "
                "the settings and data of the run that wrote it")


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 300 else text[:300] + " …"


__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "check_settings", "data_fingerprint", "describe",
           "key_fingerprint", "leaf_spec", "model_description", "package_version",
           "read_checkpoint",
           "restore_state", "write_checkpoint"]
