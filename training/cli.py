"""Command-line helpers every script uses: one-line errors, the compute-dtype flag and output
folders checked before any training starts."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jax.numpy as jnp

from models.sharding import compute_dtype


def fail(message: str) -> SystemExit:
    """A one-line CLI error: `raise fail(...)` exits non-zero without a traceback."""
    return SystemExit(f"error: {message}")


@contextmanager
def one_line_errors(where: str, plain: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Any error raised inside as a one-line CLI error naming `where`: storage errors (a missing bucket,
    credentials, the network) come in many exception types, and none needs a traceback. Errors of the
    `plain` types already say what went wrong, and are shown as they are."""
    try:
        yield
    except plain as err:
        raise fail(str(err)) from None
    except Exception as err:
        raise fail(f"{where} ({type(err).__name__}: {err})") from None


def dtype_flag(flag: str) -> jnp.dtype:
    """The compute dtype named by --dtype ("auto": bfloat16 on GPU, float32 on CPU), or a one-line error."""
    try:
        return compute_dtype(flag)
    except ValueError as err:
        raise fail(f"--dtype: {err}") from None


def writable_dir(path: str | Path, flag: str) -> Path:
    """`path` as a folder this process can write to (created if missing), or a one-line error; checked
    before training, so a bad --out-dir does not surface after the work is done."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        raise fail(f"{flag} {path}: cannot write there ({err.strerror or err})") from None
    return path


def check_file(path: str | Path | None, flag: str) -> Path | None:
    """`path` if it names an existing file (None passes), else a one-line error."""
    if path is not None and not Path(path).is_file():
        raise fail(f"{flag} {path}: no such file")
    return None if path is None else Path(path)
