"""Command-line helpers every script uses: one-line errors and the compute-dtype flag."""

from __future__ import annotations

import jax.numpy as jnp

from models.sharding import compute_dtype


def fail(message: str) -> SystemExit:
    """A one-line CLI error: `raise fail(...)` exits non-zero without a traceback."""
    return SystemExit(f"error: {message}")


def dtype_flag(flag: str) -> jnp.dtype:
    """The compute dtype named by --dtype ("auto": bfloat16 on GPU, float32 on CPU), or a one-line error."""
    try:
        return compute_dtype(flag)
    except ValueError as err:
        raise fail(f"--dtype: {err}") from None
