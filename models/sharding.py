"""Data parallelism with one code path for 1 or N devices, in 1 or N processes.

A 1-D mesh named "data" spans `jax.devices()`: every device of every process (training/distributed.py).
Batches are split along their first axis over it, parameters and optimizer state are replicated, and
jit inserts the gradient all-reduce. On one device the same calls are cheap no-ops, so nothing is
special-cased. Test with XLA_FLAGS=--xla_force_host_platform_device_count=2 on CPU, and with two
processes (tests/test_distributed.py).

With several processes, `shard_batch` takes the global batch (the same on every process) and puts each
process's rows on its devices; `shard_local` takes only this process's rows (`process_rows`), so a
loader need not read the rest; `to_host` gathers a batch-sharded result back onto every process.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all of jax.devices())."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(devices, (DATA_AXIS,))


def _check_splits(batch, parts: int, axis: int = 0) -> None:
    for leaf in jax.tree.leaves(batch):
        if leaf.shape[axis] % parts:
            raise ValueError(
                f"batch size {leaf.shape[axis]} does not split over {parts} devices: "
                f"use a batch size that is a multiple of {parts}"
            )


def process_rows(total: int, mesh: Mesh | None = None) -> slice:
    """The rows of a global batch of `total` that this process's devices hold."""
    if jax.process_count() == 1:
        return slice(0, total)
    mesh = data_mesh() if mesh is None else mesh
    held = NamedSharding(mesh, PartitionSpec(DATA_AXIS)).addressable_devices_indices_map((total,))
    starts, stops = zip(*((index[0].start or 0, index[0].stop or total) for index in held.values()))
    return slice(min(starts), max(stops))


def shard_batch(batch, mesh: Mesh | None = None):
    """Put every array in the global `batch` on the mesh, split along axis 0 (each process places its
    own rows). The batch size must divide evenly."""
    mesh = data_mesh() if mesh is None else mesh
    _check_splits(batch, mesh.devices.size)
    if jax.process_count() == 1:
        return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
    rows = process_rows(len(jax.tree.leaves(batch)[0]), mesh)
    return shard_local(jax.tree.map(lambda a: a[rows], batch), mesh)


def shard_local(batch, mesh: Mesh | None = None, axis: int = 0):
    """A global batch, split along `axis` over the mesh, from this process's part of it (`process_rows`
    for axis 0): the global batch is every process's part in process order."""
    mesh = data_mesh() if mesh is None else mesh
    sharding = NamedSharding(mesh, PartitionSpec(*[None] * axis, DATA_AXIS))
    if jax.process_count() == 1:
        _check_splits(batch, mesh.devices.size, axis)
        return jax.device_put(batch, sharding)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), batch)


def local_copy(tree):
    """This process's copy of every replicated array in `tree` (for work on this process's devices only,
    such as acting in its own envs); arrays already local are returned as they are."""

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_data(0)
        return x

    return jax.tree.map(local, tree)


def to_host(tree):
    """Every array of `tree` as a numpy array on this process, gathered from all processes if needed."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def replicate(tree, mesh: Mesh | None = None):
    """A full copy of every array in `tree` on each device of the mesh (params, optimizer state)."""
    mesh = data_mesh() if mesh is None else mesh
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def compute_dtype(flag: str = "auto") -> jnp.dtype:
    """The dtype activations are computed in: "auto" means bfloat16 on GPU/TPU and float32 on CPU.

    Master weights stay float32 whatever this returns.
    """
    if flag == "auto":
        return jnp.dtype(jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)
    if flag in ("float32", "bfloat16"):
        return jnp.dtype(flag)
    raise ValueError(f"compute dtype {flag!r} is not one of 'auto', 'float32', 'bfloat16'")
