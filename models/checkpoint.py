"""Checkpoints: one pickled plain dict, safe to load by construction.

    {"format": 1,
     "kind": "tokenizer" | "encoder" | "dynamics" | "reward" | "policy" | "lam" | "video_tokenizer"
             | "world_model",
     "config": {...}, "params": nested dict of numpy bfloat16 arrays, "step": int,
     "train_state": None or plain containers of numpy arrays (fp32 params, optimizer state, rng, ...)}

Why pickle at all: it stores nested dicts of arrays plus a config in one file with no new
dependency. Why it is safe: loading goes through `_RestrictedUnpickler`, which can only
rebuild numpy arrays, numpy / ml_dtypes dtypes and builtin containers. A pickle that names
any other global (`os.system`, `builtins.eval`, a Flax class) is refused before anything
runs. Nothing but plain data is ever saved, so nothing else is ever needed.

Writes are atomic (temp file, fsync, os.replace), so Ctrl-C never leaves half a checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import typing
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

FORMAT = 1
KINDS = ("tokenizer", "encoder", "dynamics", "reward", "policy", "lam", "video_tokenizer", "world_model")


class CheckpointError(Exception):
    """A checkpoint file that cannot be used: missing, unsafe, the wrong kind, or the wrong shapes."""


# ---------------------------------------------------------------- restricted loading

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # numpy >= 2 lives in numpy._core; numpy 1.x pickles say numpy.core.
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
} | {
    ("ml_dtypes", name)
    for name in dir(ml_dtypes)
    if isinstance(getattr(ml_dtypes, name), type) and issubclass(getattr(ml_dtypes, name), np.generic)
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise CheckpointError(
                f"refused to load: the pickle asks for {module}.{name}, but an EmuRL checkpoint only "
                "holds numpy arrays and builtin containers (the file is corrupt or malicious)"
            )
        return super().find_class(module, name)


def load_checkpoint(path: str | os.PathLike, kind: str | tuple[str, ...]) -> dict:
    """Read a checkpoint written by `save_checkpoint`, refusing anything that is not plain data.

    `kind` is the kind (or kinds) the caller can use; any other kind is a CheckpointError.
    """
    path = Path(path)
    expected = (kind,) if isinstance(kind, str) else tuple(kind)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            payload = _RestrictedUnpickler(f).load()
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except Exception as err:  # truncated, not a pickle, ...: all mean "not a checkpoint"
        raise CheckpointError(
            f"{path}: not a readable EmuRL checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an EmuRL checkpoint (expected a dict with format={FORMAT})")
    missing = {"kind", "config", "params", "step"} - payload.keys()
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {sorted(missing)}")
    if payload["kind"] not in expected:
        wanted = " or ".join(repr(k) for k in expected)
        raise CheckpointError(f"{path} is a {payload['kind']!r} checkpoint, expected {wanted}")
    payload.setdefault("train_state", None)
    return payload


# ---------------------------------------------------------------- atomic saving


def _to_plain(tree, where: str, cast_float=None):
    """Copy a pytree into dicts / lists / tuples / scalars / numpy arrays, the only things we save.

    NamedTuples (optax states) become plain tuples: their leaves keep the same order, so
    `restore_tree` can rebuild them from a template. Typed PRNG keys are stored as raw key data.
    """
    if isinstance(tree, Mapping):
        return {k: _to_plain(v, f"{where}/{k}", cast_float) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_plain(v, f"{where}/{i}", cast_float) for i, v in enumerate(tree)]
    if isinstance(tree, tuple):  # NamedTuples included
        return tuple(_to_plain(v, f"{where}/{i}", cast_float) for i, v in enumerate(tree))
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, (jax.Array, np.ndarray, np.generic)):
        if jnp.issubdtype(tree.dtype, jax.dtypes.prng_key):
            tree = jax.random.key_data(tree)
        array = np.asarray(tree)
        if cast_float is not None and np.issubdtype(array.dtype, np.floating):
            array = array.astype(cast_float)
        return array
    raise TypeError(
        f"cannot save {where or 'the tree'}: {type(tree).__name__} is not an array, scalar or builtin "
        "container (save plain data only, e.g. nnx.to_pure_dict(nnx.state(model, nnx.Param)))"
    )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str,
    config,
    params,
    step: int,
    train_state: dict | None = None,
) -> Path:
    """Write a checkpoint atomically. `params` are stored as ml_dtypes.bfloat16 numpy arrays.

    `config` is a dict or a config dataclass (stored as a dict). `train_state` keeps its dtypes
    (fp32 master weights, optimizer moments, counters) so --resume continues exactly.
    """
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind {kind!r} is not one of {KINDS}")
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    payload = {
        "format": FORMAT,
        "kind": kind,
        "config": _to_plain(config, "config"),
        "params": _to_plain(params, "params", cast_float=ml_dtypes.bfloat16),
        "step": int(step),
        "train_state": None if train_state is None else _to_plain(train_state, "train_state"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- params <-> models


def params_of(model: nnx.Module) -> dict:
    """The model's parameters as a nested dict of arrays (what `save_checkpoint` takes)."""
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _check_same_tree(expected, found, where: str, source: str):
    """Raise CheckpointError at the first path where `found` disagrees with `expected` in keys or shapes."""
    if isinstance(expected, Mapping):
        if not isinstance(found, Mapping):
            raise CheckpointError(
                f"{source}: {where or 'params'} should be a dict, found {type(found).__name__}"
            )
        missing = [k for k in expected if k not in found]
        if missing:
            raise CheckpointError(f"{source}: parameter {where}/{missing[0]} is missing")
        extra = [k for k in found if k not in expected]
        if extra:
            raise CheckpointError(f"{source}: unexpected parameter {where}/{extra[0]} (not in the model)")
        for key in expected:
            _check_same_tree(expected[key], found[key], f"{where}/{key}", source)
        return
    found_shape = getattr(found, "shape", None)
    if found_shape is None or tuple(found_shape) != tuple(expected.shape):
        raise CheckpointError(
            f"{source}: parameter {where} has shape {found_shape}, but the model built from the "
            f"checkpoint's config expects {tuple(expected.shape)}"
        )


def restore_params(model: nnx.Module, params: dict, source: str = "checkpoint") -> nnx.Module:
    """Load `params` (e.g. ckpt["params"]) into `model` in place, after checking every path and shape
    and that every value is finite.

    Values are cast to the model's parameter dtype (fp32 master weights). `model` may be abstract
    (models.build.abstract): every parameter is filled, and any other state it holds is refused.
    """
    state = nnx.state(model, nnx.Param)
    expected = nnx.to_pure_dict(state)
    _check_same_tree(expected, params, "", source)
    for where, value in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not np.isfinite(np.asarray(value, dtype=np.float32)).all():
            name = "/".join(str(getattr(key, "key", key)) for key in where)
            raise CheckpointError(
                f"{source}: parameter {name} holds NaN or infinite values (the run that wrote "
                "it diverged); refusing to load it"
            )
    cast = jax.tree.map(
        lambda e, p: jnp.asarray(np.asarray(p, dtype=np.float32), dtype=e.dtype), expected, params
    )
    nnx.replace_by_pure_dict(state, cast)
    nnx.update(model, state)
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(nnx.state(model))):
        raise ValueError(
            f"{type(model).__name__} holds state that is not a parameter: build it, not abstract(), "
            "before restoring"
        )
    return model


def restore_tree(template, saved, source: str = "train_state"):
    """Rebuild a pytree (e.g. an optax state) with `template`'s structure from its saved plain copy."""
    template_leaves, treedef = jax.tree.flatten(template)
    saved_leaves = jax.tree.leaves(saved)
    if len(template_leaves) != len(saved_leaves):
        raise CheckpointError(f"{source}: holds {len(saved_leaves)} arrays, expected {len(template_leaves)}")
    leaves = []
    for i, (t, s) in enumerate(zip(template_leaves, saved_leaves)):
        if jnp.issubdtype(t.dtype, jax.dtypes.prng_key):
            s = jax.random.wrap_key_data(jnp.asarray(s), impl=jax.random.key_impl(t))
        if tuple(np.shape(s)) != tuple(np.shape(t)):
            raise CheckpointError(f"{source}: array {i} has shape {np.shape(s)}, expected {np.shape(t)}")
        leaves.append(jnp.asarray(s))
    return jax.tree.unflatten(treedef, leaves)


def config_from_dict(cls, data: Mapping):
    """Rebuild a (possibly nested) config dataclass from the dict stored in a checkpoint."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise CheckpointError(f"config for {cls.__name__} has unknown fields {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        nested = [t for t in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(t)]
        if nested and isinstance(value, Mapping):
            value = config_from_dict(nested[0], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
