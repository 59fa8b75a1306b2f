"""Test-wide settings. JAX on a 2-core CPU spends its time compiling, so every test
process shares one persistent compilation cache and the classic (non-partitionable)
threefry, which compiles smaller programs."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
