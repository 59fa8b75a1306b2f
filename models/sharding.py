"""Data parallelism with one code path for 1 or N devices.

A 1-D mesh named "data" spans `jax.devices()`. Batches are split along their first axis
over it, parameters and optimizer state are replicated, and jit inserts the gradient
all-reduce. On one device the same calls are cheap no-ops, so nothing is special-cased.
Test with XLA_FLAGS=--xla_force_host_platform_device_count=2 on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all of jax.devices())."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(devices, (DATA_AXIS,))


def shard_batch(batch, mesh: Mesh | None = None):
    """Put every array in `batch` on the mesh, split along axis 0. The batch size must divide evenly."""
    mesh = data_mesh() if mesh is None else mesh
    num_devices = mesh.devices.size
    for leaf in jax.tree.leaves(batch):
        if leaf.shape[0] % num_devices:
            raise ValueError(
                f"batch size {leaf.shape[0]} does not split over {num_devices} devices: "
                f"use a batch size that is a multiple of {num_devices}"
            )
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.device_put(batch, sharding)


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
