"""The machine a bench ran on, for the header of its results file, and writing that file."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax

from training.io import atomic_write


def machine() -> str:
    """The CPU model, the cores this process may use, and JAX's backend and devices: machines of the
    same name have come with different CPUs here (AMD EPYC, Intel Xeon), so results say which."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, jax {jax.__version__} on {jax.default_backend()} "
        f"({len(jax.devices())} x {devices})"
    )


def publish(output: Path, lines: list[str]) -> str:
    """The results table from its lines: written to `output` atomically, printed, and returned."""
    table = "\n".join(lines)
    atomic_write(output, table)
    print(table)
    return table
