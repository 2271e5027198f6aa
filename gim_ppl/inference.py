"""Inference on a `GIM`: MAP `fit` (SVI), `run_mcmc` (NUTS) and `to_arviz`.

All three use the plain NumPyro model; nothing here is needed to fit it with `SVI.run`.
ArviZ calls live only in this module, so an ArviZ version switch touches one file.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_median
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.svi import SVIRunResult
from numpyro.optim import optax_to_numpyro

from gim_ppl.data import PerturbationData
from gim_ppl.mechanisms import masked_weights
from gim_ppl.model import GIM

SCHEDULES = ("cosine", "constant")


class FitResult(NamedTuple):
    """Outcome of `fit`.

    sites: the fitted sample-site values (`guide.median(params)`).
    losses: `(n_steps_run,)` negative ELBO per step (up to a constant for AutoDelta).
    svi_result: NumPyro's `SVIRunResult(params, state, losses)`.
    guide: the guide used; `message`: empty, or why the fit stopped early; `seconds`: wall time.
    """

    sites: dict
    losses: np.ndarray
    svi_result: SVIRunResult
    guide: object
    message: str
    seconds: float


def annealing_schedule(kind: str | None, final: float, steps: int, ramp: float = 1.0):
    """`(steps,)` weights rising to `final` over the first `ramp` fraction of the steps.

    "cosine": half a cosine from 0 up to `final`, then flat; "constant"/None: `final`
    throughout.
    """
    if kind in (None, "constant"):
        return jnp.full((steps,), final)
    if kind == "cosine":
        t = jnp.clip(jnp.arange(steps) / max(ramp * (steps - 1), 1), 0.0, 1.0)
        return final * 0.5 * (1.0 - jnp.cos(math.pi * t))
    raise ValueError(f"schedule must be one of {SCHEDULES} or None, got {kind!r}")


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


def fit(
    model: GIM,
    data: PerturbationData,
    *,
    steps: int,
    key,
    learning_rate: float = 1e-3,
    sparsity_schedule: str | None = "cosine",
    progress: bool = True,
    guide=None,
    chunk_size: int = 1000,
    target_sparsity: float | None = None,
    acyclicity_schedule: str | None = "cosine",
    acyclicity_ramp: float = 0.5,
    batch_size: int | None = None,
    devices=None,
    acyclicity_dual_ascent: bool = True,
) -> FitResult:
    """MAP (or any guide) by SVI with optax Adam, run in jitted `lax.scan` chunks.

    Between chunks: a progress bar update and a NaN guard — on a non-finite loss or
    parameter the fit stops with a warning and keeps the parameters of the last finite chunk.

    Args:
        model: a `GIM`.
        data: training `PerturbationData` with cells.
        steps: Adam steps.
        key: PRNG key (same key ⇒ same result).
        sparsity_schedule: "cosine" (β_I from 0 up to its final value), "constant" or None.
        guide: default `AutoDelta(model)`; any NumPyro guide works.
        target_sparsity: final β_I (default `model.target_sparsity`).
        acyclicity_schedule: "cosine" raises λ from 0 to `model.acyclicity_weight` over the
            first `acyclicity_ramp` of the steps (edges first fit freely, then the weaker
            direction of each 2-cycle is pruned, as augmented-Lagrangian DAG learners do);
            "constant"/None keeps λ fixed.
        batch_size: cells per context per step (stratified minibatches, see
            `stratified_batch`); a step then costs O(n_contexts · batch_size), not O(n_cells).
            None: full batch.
        devices: a sequence of JAX devices to shard the cells over (data parallel; see
            `shard_cells`); None keeps everything on the default device.
        acyclicity_dual_ascent: after the λ ramp, multiply λ by 10 per chunk while the
            spectral radius of |W| exceeds 0.3 (fits that would end cyclic; O(d³) on the host
            per chunk). On the benchmark it fired on 1 of 5 seeds and left the others as
            they were.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1 cells per context, got {batch_size}")
    if not isinstance(data, PerturbationData) or data.x is None:
        raise ValueError("fit needs a PerturbationData with cells (data.x is None)")
    guide = AutoDelta(model) if guide is None else guide
    beta = model.target_sparsity if target_sparsity is None else float(target_sparsity)
    betas = annealing_schedule(sparsity_schedule, beta, steps)
    lams = annealing_schedule(acyclicity_schedule, model.acyclicity_weight, steps,
                              acyclicity_ramp)
    svi = SVI(model, guide, optax_to_numpyro(optax.adam(learning_rate)), Trace_ELBO())

    if batch_size is not None and devices is not None:
        raise ValueError("give batch_size or devices, not both")
    key, batch_key = jax.random.split(key)
    batches = None if batch_size is None else BatchIndex.build(data, int(batch_size))
    pad_weights = None
    if devices is not None:
        data, pad_weights = shard_cells(data, devices)

    def step_data(step, data, pad_weights):
        if batches is None:
            return data, pad_weights
        return stratified_batch(jax.random.fold_in(batch_key, step), data, batches)

    @jax.jit
    def run_chunk(state, weights, data, pad_weights):
        def body(state, row):
            batch, cell_weights = step_data(row[2].astype(jnp.int32), data, pad_weights)
            return svi.update(state, batch, target_sparsity=row[0], acyclicity_weight=row[1],
                              cell_weights=cell_weights)
        return lax.scan(body, state, weights)

    start = time.perf_counter()
    weights = jnp.stack([betas, lams, jnp.arange(steps, dtype=betas.dtype)], axis=1)
    batch0, w0 = step_data(0, data, pad_weights)
    state = svi.init(key, batch0, target_sparsity=betas[0], acyclicity_weight=lams[0],
                     cell_weights=w0)
    losses, message, done = [], "", 0
    bar = _progress_bar(steps, progress)
    while done < steps:
        n = min(chunk_size, steps - done)
        new_state, chunk_losses = run_chunk(state, weights[done:done + n], data, pad_weights)
        chunk_losses = np.asarray(chunk_losses)
        if not (np.all(np.isfinite(chunk_losses)) and _finite(svi.get_params(new_state))):
            first = done + int(np.argmin(np.isfinite(chunk_losses)))
            message = (
                f"non-finite loss or parameters within steps {done}..{done + n - 1} "
                f"(first non-finite loss at step {first}); stopped and kept the parameters "
                f"after step {done - 1}. Try a smaller learning_rate."
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            break
        state, done = new_state, done + n
        losses.append(chunk_losses)
        if (acyclicity_dual_ascent and acyclicity_schedule is not None
                and done >= acyclicity_ramp * steps and done < steps):
            weights = _raise_acyclicity_weight(guide, svi.get_params(state), weights, done)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{chunk_losses[-1]:.4g}")
    if bar is not None:
        bar.close()
    losses = np.concatenate(losses) if losses else np.zeros((0,))
    params = svi.get_params(state)
    sites = {k: v for k, v in guide.median(params).items() if k in model.site_shapes}
    return FitResult(sites, losses, SVIRunResult(params, state, jnp.asarray(losses)), guide,
                     message, time.perf_counter() - start)



def _raise_acyclicity_weight(guide, params, weights, done: int, *,
                             max_cycle_gain: float = 0.3, factor: float = 10.0,
                             max_weight: float = 1e4):
    """Dual ascent on λ once its ramp is over: while the spectral radius of |W| (the
    largest geometric-mean edge weight around a cycle) exceeds `max_cycle_gain`, multiply λ
    for the remaining steps by `factor` (up to `max_weight`).

    A cyclic W can raise the product of Gaussian conditionals by O(1) nats per cell (it is no
    longer a normalised density), and on strongly correlated data that gain can beat a fixed
    λ; augmented-Lagrangian DAG learners raise λ until h(W) ≈ 0 for the same reason. The
    trigger is the cycle gain, which sets how much sampling through `(I − W)⁻¹` amplifies,
    not the penalty in nats: Adam's jitter on weak reverse edges costs many nats on
    thousands of cells at a gain of ~0.1, and raising λ for it degraded good fits.
    """
    w = np.abs(np.asarray(masked_weights(jnp.asarray(guide.median(params)["weights"]))))
    lam = float(weights[done, 1])
    gain = float(np.max(np.abs(np.linalg.eigvals(w)))) if w.size else 0.0
    if gain <= max_cycle_gain or lam >= max_weight:
        return weights
    return weights.at[done:, 1].set(jnp.minimum(weights[done:, 1] * factor, max_weight))


class BatchIndex(NamedTuple):
    """Where each context's cells are: `order (n_cells,)` cell indices sorted by context,
    `start (n_contexts,)` offsets into `order`, `count (n_contexts,)`; `size` cells per
    context per batch."""

    order: jnp.ndarray
    start: jnp.ndarray
    count: jnp.ndarray
    size: int

    @classmethod
    def build(cls, data: PerturbationData, size: int) -> BatchIndex:
        ctx = np.asarray(data.context)
        count = np.bincount(ctx, minlength=data.n_contexts)
        start = np.r_[0, np.cumsum(count)[:-1]]
        order = np.argsort(ctx, kind="stable").astype(np.int32)
        return cls(jnp.asarray(order), jnp.asarray(start, jnp.int32),
                   jnp.asarray(count, jnp.int32), int(size))


def stratified_batch(key, data: PerturbationData, index: BatchIndex):
    """A minibatch of `index.size` slots per context and the cell weights that make its
    sufficient statistics unbiased for the full data's.

    A context with `n_k ≤ size` cells contributes all of them (weight 1; unused slots weight
    0); a larger one `size` cells drawn with replacement, each weighted `n_k / size`. The sum
    of the weights of context k is `n_k` in every batch.

    Returns:
        `(PerturbationData with n_contexts · size cells, cell_weights (n_contexts · size,))`.
    """
    b = index.size
    slot = jnp.arange(b)[None, :]
    count = index.count[:, None]
    small = count <= b
    u = jax.random.uniform(key, (index.count.shape[0], b))
    offset = jnp.where(small, jnp.minimum(slot, jnp.maximum(count - 1, 0)),
                       jnp.floor(u * count).astype(jnp.int32))
    cells = index.order[index.start[:, None] + offset].reshape(-1)
    dtype = data.x.dtype
    weight = jnp.where(small, (slot < count).astype(dtype), count.astype(dtype) / b)
    ctx = jnp.repeat(jnp.arange(index.count.shape[0], dtype=jnp.int32), b)
    batch = PerturbationData(
        data.x[cells], ctx, data.features, data.dose, data.observational, data.perturbation,
        data.var_names, data.context_names, data.feature_names, data.perturbation_names,
    )
    return batch, weight.reshape(-1)


def shard_cells(data: PerturbationData, devices):
    """Place the cells of `data` split over `devices` along the cell axis (per-context arrays
    replicated), so a jitted likelihood runs data-parallel: each device sums its cells'
    statistics and XLA all-reduces them.

    The cell count is padded to a multiple of the number of devices with copies of the first
    cell carrying weight 0, so the result equals the unsharded one up to summation order.

    Returns:
        `(sharded PerturbationData, cell_weights (n_padded,))` — pass the weights to the
        model (`cell_weights=`); `fit(..., devices=)` does this for you.
    """
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    devices = list(devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    n = data.x.shape[0]
    pad = (-n) % len(devices)
    idx = np.r_[np.arange(n), np.zeros(pad, dtype=int)]
    weights = np.r_[np.ones(n), np.zeros(pad)].astype(np.asarray(data.x).dtype)
    mesh = Mesh(np.asarray(devices), ("cells",))
    rows, rep = NamedSharding(mesh, P("cells")), NamedSharding(mesh, P())

    def put(a, sharding):
        return jax.device_put(jnp.asarray(a), sharding)

    sharded = PerturbationData(
        put(np.asarray(data.x)[idx], rows), put(np.asarray(data.context)[idx], rows),
        put(data.features, rep), put(data.dose, rep), put(data.observational, rep),
        put(data.perturbation, rep), data.var_names, data.context_names, data.feature_names,
        data.perturbation_names,
    )
    return sharded, put(weights, rows)


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="step", mininterval=0.5)


def run_mcmc(
    model: GIM,
    data: PerturbationData,
    *,
    key,
    num_warmup: int,
    num_samples: int,
    num_chains: int = 1,
    progress: bool = False,
    **nuts_kwargs,
) -> MCMC:
    """NUTS on the same model (targets marginalised ⇒ exact, deterministic log density).

    Chains run in parallel when enough devices exist, otherwise sequentially.
    """
    if data.x is None:
        raise ValueError("run_mcmc needs a PerturbationData with cells (data.x is None)")
    if model.acyclicity == "spectral":
        # The NO-BEARS gradient holds the power-iteration vectors fixed: good enough for
        # Adam, but HMC needs the gradient of the density it evaluates (seen: step size
        # collapsing to ~1e-3, r_hat ~ 2 on a 4-variable problem).
        warnings.warn(
            "NUTS on a GIM with acyclicity='spectral' mixes poorly: its penalty gradient is a "
            "power-iteration surrogate, not the exact gradient. Build the model with "
            "acyclicity='notears' (exact, fine for small d) for MCMC.",
            UserWarning, stacklevel=2)
    nuts_kwargs.setdefault("init_strategy", init_to_median)
    chain_method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    mcmc = MCMC(NUTS(model, **nuts_kwargs), num_warmup=num_warmup, num_samples=num_samples,
                num_chains=num_chains, chain_method=chain_method, progress_bar=progress)
    mcmc.run(key, data)
    return mcmc


# --- ArviZ ------------------------------------------------------------------------------


def _site_dims(model: GIM) -> dict[str, list[str]]:
    dims = {"weights": ["parent", "var"], "bias": ["var"], "noise_scale": ["var"]}
    for site, _shape in model.site_shapes.items():
        if site in dims:
            continue
        if site.startswith("mlp_"):
            dims[site] = {"mlp_w1": ["var", "parent", "hidden"], "mlp_b1": ["var", "hidden"],
                          "mlp_w2": ["var", "hidden"]}[site]
        elif site == "gim_w1":
            dims[site] = ["feature", "gim_hidden"]
        elif site == "gim_b1":
            dims[site] = ["gim_hidden"]
        elif site.endswith("_bias"):
            dims[site] = ["var"]
        else:
            dims[site] = ["gim_hidden" if model.intervention == "mlp" else "feature", "var"]
    return dims


def to_arviz(model: GIM, mcmc_or_sites, data: PerturbationData, *, per: str = "context"):
    """`arviz.InferenceData` with named dims and coords.

    Sites get dims `var`, `parent`, `feature`, `hidden`; derived quantities `target_prob`,
    `emax`, `ec50`, `hill` are added to the posterior, indexed by `per`:
    - "context": dims `(context, var)`, one row per context of `data`;
    - "perturbation": dims `(perturbation, var)`, one row per perturbation present in
      `data` (they depend on the features, not on the dose), so `az.summary` rows read
      `emax[drug_A, GENE3]`. Needs every perturbation's contexts to share one feature row.

    Args:
        mcmc_or_sites: a `numpyro.infer.MCMC` after `run`, or sites (a MAP point or draws with
            a leading draw axis; treated as one chain).
        data: gives the names (variables, contexts, features, perturbations).
        per: "context" or "perturbation" (see above).
    """
    import arviz as az

    if per not in ("context", "perturbation"):
        raise ValueError(f"per must be 'context' or 'perturbation', got {per!r}")
    coords = {
        "var": list(data.var_names),
        "parent": list(data.var_names),
        "feature": list(data.feature_names),
        "hidden": list(range(model.hidden)),
        "gim_hidden": list(range(model.hidden)),
    }
    derived_on = data
    if per == "context":
        coords["context"] = list(data.context_names)
    else:
        pert = np.asarray(data.perturbation)
        ids = np.unique(pert[pert >= 0])
        if ids.size == 0:
            raise ValueError("per='perturbation' needs perturbational contexts in data")
        features = np.asarray(data.features)
        first = []
        for g in ids:
            rows = np.flatnonzero(pert == g)
            if not np.allclose(features[rows], features[rows[0]]):
                raise ValueError(
                    f"perturbation {data.perturbation_names[g]!r} has contexts with different "
                    "features; use per='context'")
            first.append(int(rows[0]))
        coords["perturbation"] = [data.perturbation_names[g] for g in ids]
        derived_on = data.subset(first)
    dims = _site_dims(model)
    if isinstance(mcmc_or_sites, MCMC):
        grouped = mcmc_or_sites.get_samples(group_by_chain=True)
        samples = {k: np.asarray(v) for k, v in grouped.items() if k in model.site_shapes}
        stats = {k: np.asarray(v) for k, v in
                 mcmc_or_sites.get_extra_fields(group_by_chain=True).items()}
    elif isinstance(mcmc_or_sites, Mapping):
        draws = model._check_sites(mcmc_or_sites)
        samples = {k: np.asarray(mcmc_or_sites[k]) for k in model.site_shapes}
        samples = {k: (v if draws else v[None])[None] for k, v in samples.items()}
        stats = {}
    else:
        raise TypeError(f"expected an MCMC or a dict of sites, got {type(mcmc_or_sites)}")

    n_chain, n_draw = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape((n_chain * n_draw, *v.shape[2:])) for k, v in samples.items()}
    derived = model.hill_parameters(flat, derived_on)

    def prob(params):
        logits = model._heads(params, derived_on).target_logits
        return jnp.where(derived_on.observational[:, None], 0.0, jax.nn.sigmoid(logits))

    derived["target_prob"] = np.asarray(jax.vmap(prob)({k: jnp.asarray(v)
                                                        for k, v in flat.items()}))
    for name, value in derived.items():
        samples[name] = value.reshape((n_chain, n_draw, *value.shape[1:]))
        dims[name] = [per, "var"]
    return az.from_dict(posterior=samples, sample_stats=stats or None, coords=coords, dims=dims)
