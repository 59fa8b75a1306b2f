"""Training across processes and machines with jax.distributed.

Every process runs the same script with the same flags but --process-id. jax.distributed joins them
into one set of devices: models/sharding.py's data mesh spans all of them, each process puts its own
slice of every global batch on its own devices, and jit averages the gradients across processes. On the
CPU the collectives run over gloo, so two processes on one machine train as one run.

Under SLURM (more than one task), jax.distributed.initialize() reads the coordinator, process count and
id from SLURM's variables, so the flags can be left out. A process that dies stops the others: they
miss its heartbeat and exit with "another task died" within --heartbeat-timeout seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax

from training.cli import fail


@dataclass
class Distributed:
    coordinator_address: str | None = None
    """host:port where process 0 runs the jax.distributed coordinator (every process gives the same).
    None: one process, or SLURM's tasks when run under srun."""
    num_processes: int | None = None
    """How many processes train together (with --coordinator-address)."""
    process_id: int | None = None
    """This process's number, 0 .. --num-processes - 1; process 0 writes every output."""
    heartbeat_timeout: int = 30
    """Seconds without a sign of life from a process before the others stop with an error."""


def under_slurm() -> bool:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ


def initialize(cfg: Distributed) -> None:
    """Join the other processes (nothing to do for one process); call before any JAX computation."""
    flags = (cfg.coordinator_address, cfg.num_processes, cfg.process_id)
    if all(flag is None for flag in flags) and not under_slurm():
        return
    if not under_slurm() and None in flags:
        raise fail("--coordinator-address, --num-processes and --process-id go together")
    if cfg.num_processes is not None and not 0 <= (cfg.process_id or 0) < cfg.num_processes:
        raise fail(f"--process-id {cfg.process_id} is not in 0 .. {cfg.num_processes - 1}")
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            cfg.coordinator_address,
            cfg.num_processes,
            cfg.process_id,
            initialization_timeout=max(cfg.heartbeat_timeout, 60),
            heartbeat_timeout_seconds=cfg.heartbeat_timeout,
        )
    except Exception as err:  # a coordinator that never answers, a bad address: one line
        raise fail(f"--coordinator-address {cfg.coordinator_address}: {type(err).__name__}: {err}") from None


def is_main_process() -> bool:
    return jax.process_index() == 0
