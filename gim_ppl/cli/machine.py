"""`machine_description`: the machine a benchmark or fit ran on (CPU, cores, Python, JAX
backend), printed and recorded by the `demo`, `bench` and `fit` commands."""

from __future__ import annotations

import os
import platform

import jax


def machine_description() -> str:
    """CPU model, core count and JAX backend, for benchmark output."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    backend = device.platform if device.platform == "cpu" else (
        f"{device.platform} ({device.device_kind})")
    return (f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, "
            f"jax {jax.__version__} on {backend}")
