"""Building models without paying for Flax's eager init: `build(make)` and `abstract(make)`.

Flax initialises a module eagerly, one jax.random op per parameter, and XLA compiles each of
those ops on its own at its default optimisation level. With partitionable threefry (JAX's
default) that costs ~2 s per parameter shape on a 2-core CPU: 27 s for the small tokenizer
before its first step, and 11 s to load an encoder whose random weights are overwritten anyway.

- `build(make)` traces the constructor once and compiles it with cheaper settings: ~3 s for the
  small tokenizer, and the same weights bit for bit (tests/test_models.py).
- `abstract(make)` builds shapes only (`nnx.eval_shape`), for loaders that then restore every
  parameter from a checkpoint (`restore_params` refuses to leave any value abstract).

`make` builds the model from scratch, its `nnx.Rngs` included: it is called twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
from flax import nnx

Module = TypeVar("Module", bound=nnx.Module)

# Level 3 (XLA's default) spends seconds optimising each threefry; level 2 compiles ~10x faster.
# Without algsimp, XLA computes what the eager ops compute: with it, normal(0.02) folds its two
# constant scales into one and the position embeddings come out 1e-9 off (level 0 is 1 ulp off).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2, "xla_disable_hlo_passes": "algsimp"}


def abstract(make: Callable[[], Module]) -> Module:
    """The model `make()` builds, with jax.ShapeDtypeStruct in place of every array."""
    return nnx.eval_shape(make)


def build(make: Callable[[], Module]) -> Module:
    """`make()`, with its whole random init compiled as one function on a CPU (elsewhere eager
    init is cheap, and `make()` is returned as is)."""
    if jax.default_backend() != "cpu":
        return make()
    graphdef, _ = nnx.split(abstract(make))
    init = jax.jit(lambda: nnx.split(make())[1], compiler_options=INIT_COMPILER_OPTIONS)
    return nnx.merge(graphdef, init())
