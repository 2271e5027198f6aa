"""Resumable fits: `fit(..., checkpoint=, resume=)` continues a run bit for bit, survives a
kill while writing, and refuses checkpoints of other settings or data."""

import dataclasses
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import gim_ppl
from gim_ppl.inference import checkpoint as ckpt
from gim_ppl.inference.schedules import cosine_ramp
from tests import ROOT
from tests._problems import small_data

fit_module = importlib.import_module("gim_ppl.inference.fit")

# Short chunks keep the tests fast; a checkpoint is written between chunks.
CHUNK = 20
STEPS = 80


class Interrupted(Exception):
    """Stands for a kill right after a checkpoint was written."""


def _assert_same_run(a, b):
    np.testing.assert_array_equal(a.losses, b.losses)
    assert set(a.sites) == set(b.sites)
    for name in a.sites:
        np.testing.assert_array_equal(a.sites[name], b.sites[name], err_msg=name)


def _interrupt_after(monkeypatch, stop_at: int):
    """Make `fit` stop (as if killed) right after writing its checkpoint at `stop_at`."""
    write = ckpt.write_checkpoint

    def write_then_stop(path, state, **kw):
        write(path, state, **kw)
        if kw["header"]["steps_done"] == stop_at:
            raise Interrupted

    monkeypatch.setattr(ckpt, "write_checkpoint", write_then_stop)


def test_interrupted_fit_resumes_bit_for_bit(monkeypatch, tmp_path):
    # the hardest case for the loop state: minibatches and the relaxed marginal (the
    # per-step batch keys and the SVI key must continue), and dual ascent
    # that always fires (the resumed run must take the dual step its checkpoint was
    # written before). The plain exact fit is resumed in a new process below.
    model, data = gim_ppl.GIM(3, 2, marginal="relaxed_mc", n_mc=4), small_data()
    kw = dict(steps=STEPS, key=jax.random.key(0), progress=False, batch_size=3,
              dual_ascent=gim_ppl.DualAscent(max_cycle_gain=-1.0))
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", CHUNK)
    path = tmp_path / "fit.ckpt"
    full = gim_ppl.fit(model, data, **kw)
    with monkeypatch.context() as m:
        _interrupt_after(m, STEPS // 2)
        with pytest.raises(Interrupted):
            gim_ppl.fit(model, data, checkpoint=path, **kw)
    assert ckpt.read_checkpoint(path).header["steps_done"] == STEPS // 2
    _assert_same_run(full, gim_ppl.fit(model, data, resume=path, **kw))


def test_finished_run_extends_to_more_steps(monkeypatch, tmp_path):
    # fit(N) then fit(2N, resume=) = fit(2N) when the schedules agree on the first N steps
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", CHUNK)
    model, data = gim_ppl.GIM(3, 2), small_data()
    kw = dict(key=jax.random.key(0), progress=False, dual_ascent=False,
              target_sparsity=cosine_ramp(1.0, STEPS - 1),
              acyclicity_weight=cosine_ramp(10.0, STEPS / 2))
    path = tmp_path / "fit.ckpt"
    full = gim_ppl.fit(model, data, steps=STEPS, **kw)
    half = gim_ppl.fit(model, data, steps=STEPS // 2, checkpoint=path, **kw)
    np.testing.assert_array_equal(half.losses, full.losses[: STEPS // 2])
    _assert_same_run(full, gim_ppl.fit(model, data, steps=STEPS, resume=path, **kw))
    # the default ramps stretch with `steps`: extending with them is refused
    with pytest.raises(ValueError, match="schedule gives other values"):
        gim_ppl.fit(model, data, steps=STEPS, resume=path, key=jax.random.key(0),
                    progress=False, dual_ascent=False)


def test_checkpoint_every_is_rounded_up_to_whole_chunks(monkeypatch, tmp_path):
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", CHUNK)
    written = []
    write = ckpt.write_checkpoint
    monkeypatch.setattr(ckpt, "write_checkpoint", lambda path, state, **kw: (
        written.append(kw["header"]["steps_done"]), write(path, state, **kw)))
    gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=100, key=jax.random.key(0),
                progress=False, checkpoint=tmp_path / "c", checkpoint_every=30)
    assert written == [40, 80, 100]
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=5, key=jax.random.key(0),
                    checkpoint=tmp_path / "c", checkpoint_every=0)
    with pytest.raises(ValueError, match="no checkpoint file"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=5, key=jax.random.key(0),
                    resume=tmp_path / "missing")


@pytest.fixture(scope="module")
def written_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "fit.ckpt"
    gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=10, key=jax.random.key(0),
                progress=False, checkpoint=path)
    return path


@pytest.mark.parametrize("change, match", [
    (dict(data=small_data(seed=1)), "other data"),
    (dict(model=gim_ppl.GIM(3, 2, mechanism="mlp", hidden=2)), "other model.mechanism"),
    (dict(model=gim_ppl.GIM(3, 2, edge_mask=np.triu(np.ones((3, 3), bool), 1))),
     "other model.edge_mask"),  # the mask was missing from the fingerprint once
    (dict(model=gim_ppl.GIM(3, 2, coarsening=50.0)), "other model.coarsening"),
    (dict(model=gim_ppl.GIM(3, 2, priors=gim_ppl.Priors(
        bias=__import__("numpyro").distributions.Normal(0.0, 1.0)))), "other model.priors"),
    (dict(model=gim_ppl.GIM(3, 2, pooled=small_data())), "other model.pooled"),
    (dict(model=gim_ppl.GIM(3, 2, shrinkage="ard")), "other model.shrinkage"),
    (dict(model=gim_ppl.GIM(3, 2, target_sparsity=2.0)), "other model.target_sparsity"),
    (dict(key=jax.random.key(1)), "other key"),
    (dict(batch_size=4), "other batch_size"),
    (dict(restarts=2, validation=0), "other restarts"),
    (dict(optimizer=optax.sgd(1e-3)), "other state_layout"),
    (dict(dual_ascent=False), "other dual_ascent"),
    (dict(steps=5), "10 steps done, more than steps=5"),
])
def test_checkpoint_of_other_settings_or_data_is_refused(written_checkpoint, change, match):
    kw = dict(model=gim_ppl.GIM(3, 2), data=small_data(), steps=10, key=jax.random.key(0),
              progress=False) | change
    with pytest.raises(ValueError, match=match):
        gim_ppl.fit(kw.pop("model"), kw.pop("data"), resume=written_checkpoint, **kw)


def test_the_model_fingerprint_covers_every_attribute(written_checkpoint):
    """The model's settings are read off the object (`ckpt.model_description`), not listed
    by hand: a setting a future version adds as a field is checked without being named
    anywhere, and the same model rebuilt from the same arguments (the edge mask a new array
    of the same values) resumes."""
    mask = np.triu(np.ones((3, 3), bool), 1)
    model = gim_ppl.GIM(3, 2, edge_mask=mask)
    assert ckpt.model_description(model) == ckpt.model_description(
        gim_ppl.GIM(3, 2, edge_mask=mask.copy()))
    assert ckpt.model_description(model)["edge_mask"] == mask.tolist()
    # a long description is recorded by its hash, which a change of one value changes
    big = np.ones((30, 30), bool)
    hashed = ckpt.model_description(gim_ppl.GIM(30, 2, edge_mask=big))["edge_mask"]
    big[3, 7] = False
    assert hashed.startswith("sha256:") and hashed != ckpt.model_description(
        gim_ppl.GIM(30, 2, edge_mask=big))["edge_mask"]
    @dataclasses.dataclass(frozen=True, eq=False)
    class Future(gim_ppl.GIM):  # the checkpoint's model with a setting a future field adds
        future_setting: float = 0.5

    model = Future(3, 2)
    kw = dict(steps=10, key=jax.random.key(0), progress=False, resume=written_checkpoint)
    with pytest.raises(ValueError, match=r'other model\.future_setting: "absent" in the '
                                         r"checkpoint, 0\.5 now"):
        gim_ppl.fit(model, small_data(), **kw)
    # the same model from the same arguments: accepted (the run is already complete)
    resumed = gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), **kw)
    assert resumed.losses.shape[0] == 10


def test_checkpoint_of_another_package_version_is_refused(written_checkpoint, monkeypatch):
    assert ckpt.package_version() == gim_ppl.__version__
    monkeypatch.setattr(ckpt, "package_version", lambda: "0.0.0-other")
    with pytest.raises(ValueError, match="other version"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=10, key=jax.random.key(0),
                    progress=False, resume=written_checkpoint)


def test_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a gim_ppl fit checkpoint"):
        ckpt.read_checkpoint(path)


_KILLED_WRITER = """
import importlib, os, sys, time
sys.path.insert(0, {root!r})
import jax
import gim_ppl
from gim_ppl.inference import checkpoint as ckpt
from tests._problems import small_data
fit_module = importlib.import_module("gim_ppl.inference.fit")
fit_module.CHUNK_STEPS = {chunk}
commit, calls = ckpt._commit, []

def commit_slowly(tmp, path):
    calls.append(tmp)
    if len(calls) == 2:  # the second checkpoint: written to its temporary file, not moved
        open({ready!r}, "w").write(tmp)
        time.sleep(600)
    commit(tmp, path)

ckpt._commit = commit_slowly
gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps={steps}, key=jax.random.key(0),
            progress=False, checkpoint={path!r})
"""


def test_kill_while_writing_leaves_the_previous_checkpoint(monkeypatch, tmp_path):
    path, ready = tmp_path / "fit.ckpt", tmp_path / "ready"
    script = _KILLED_WRITER.format(root=str(ROOT), chunk=CHUNK, ready=str(ready),
                                   steps=STEPS, path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.communicate(timeout=5)[0].decode()[-2000:]
        time.sleep(0.2)  # the marker is written; the writer sleeps before os.replace
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert Path(ready.read_text()).exists()  # the unfinished temporary file is left over
    saved = ckpt.read_checkpoint(path)  # the previous checkpoint, whole
    assert saved.header["steps_done"] == CHUNK and saved.losses.shape == (CHUNK, 1)
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", CHUNK)
    kw = dict(steps=STEPS, key=jax.random.key(0), progress=False)
    model, data = gim_ppl.GIM(3, 2), small_data()
    _assert_same_run(gim_ppl.fit(model, data, **kw),
                     gim_ppl.fit(model, data, resume=path, **kw))
