"""What every bench's results file needs: the machine it ran on, and an atomic write."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax


def machine() -> str:
    """The CPU model, the cores this process may use, and JAX's backend and devices: machines of the
    same name have come with different CPUs here (AMD EPYC, Intel Xeon), so results say which."""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, jax {jax.__version__} on {jax.default_backend()} "
            f"({len(jax.devices())} x {devices})")


def write_table(path: Path, text: str) -> None:
    """Write `text` to `path` (creating its folder) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
