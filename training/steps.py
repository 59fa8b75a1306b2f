"""The pieces of every supervised trainer (Phases 1-2, the latent-action model, the video tokenizer):
the optimizer, the jitted train step, dead-code restarts, and the train state with its --resume copy.

A train state is a dict of arrays, replicated over the devices:
{"trainable": params the optimizer updates, "frozen": every other variable, "opt_state": ...},
plus whatever a trainer keeps beside them (e.g. "usage", the code counts since the last restart).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from models.checkpoint import CheckpointError, load_checkpoint, restore_params, restore_tree
from models.sharding import replicate
from training.cli import fail


def make_optimizer(lr: float, total_steps: int) -> optax.GradientTransformation:
    """AdamW with linear warmup (10% of training, at most 100 steps), cosine decay to lr / 10, and
    global-norm gradient clipping at 1."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        lr,
        warmup_steps=min(100, max(total_steps // 10, 1)),
        decay_steps=max(total_steps, 2),
        end_value=lr * 0.1,
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))


def new_train_state(
    model: nnx.Module,
    optimizer: optax.GradientTransformation,
    resumed: dict | None = None,
    trainable=nnx.Param,
    source: str = "checkpoint",
    **extra,
) -> tuple[nnx.GraphDef, dict]:
    """(graphdef, replicated train state) of `model`. With `resumed` (a checkpoint's train_state,
    as `train_state_to_save` wrote it) the parameters and optimizer state continue from it.
    `extra` arrays join the state (e.g. usage=...)."""
    graphdef, params, frozen = nnx.split(model, trainable, ...)
    opt_state = optimizer.init(params)
    if resumed is not None:
        restore_params(model, resumed["params"], source=source)
        _, params, frozen = nnx.split(model, trainable, ...)
        opt_state = restore_tree(opt_state, resumed["opt_state"], source=f"{source} train_state")
    return graphdef, replicate({"trainable": params, "frozen": frozen, "opt_state": opt_state, **extra})


def count_params(state: dict) -> int:
    """Trainable parameters in a train state."""
    return sum(x.size for x in jax.tree.leaves(state["trainable"]))


def make_train_step(graphdef, optimizer, loss_fn):
    """Jitted `train_step(state, batch, key) -> (state, metrics)` with the state donated.

    `loss_fn(model, batch, key) -> (loss, metrics)` is a pure loss. The step adds metrics["grad_norm"]
    and metrics["finite"], whether the loss and the gradient norm were finite (a `NonFiniteGuard`
    watches it)."""

    @partial(jax.jit, donate_argnums=0)
    def train_step(state, batch, key):
        def loss_of(trainable):
            return loss_fn(nnx.merge(graphdef, trainable, state["frozen"]), batch, key)

        (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state["trainable"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["trainable"])
        trainable = optax.apply_updates(state["trainable"], updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        return {**state, "trainable": trainable, "opt_state": opt_state}, {
            **metrics,
            "grad_norm": grad_norm,
            "finite": finite,
        }

    return train_step


class NonFiniteGuard:
    """The first step whose loss or gradient norm was not finite, kept on the device so the loop never
    waits on it; `check` (before a checkpoint is written) stops the run with one line."""

    NONE = np.iinfo(np.int32).max

    def __init__(self):
        self.first_bad_step = jnp.int32(self.NONE)

    def update(self, finite: jax.Array, step: int) -> None:
        self.first_bad_step = jnp.minimum(self.first_bad_step, jnp.where(finite, self.NONE, step))

    def check(self, what: str, checkpoint: Path) -> None:
        step = int(self.first_bad_step)
        if step != self.NONE:
            kept = (
                f"{checkpoint} keeps the last good weights" if checkpoint.is_file() else "nothing was saved"
            )
            raise fail(
                f"{what}: the loss or its gradient became NaN or infinite at step {step + 1}; stopped "
                f"before saving, so {kept} (try a lower --lr)"
            )


class EpochSums:
    """Running sums of an epoch's step metrics, kept on the device (no sync per step), the number of codes
    restarted, and whatever arrays a trainer adds to `extra`. `to_save` and `restore` carry a half-done
    epoch through a checkpoint, so a run stopped mid-epoch reports the same epoch when resumed."""

    def __init__(self, sums: dict, restarted: int = 0, extra: dict | None = None):
        self.sums = sums
        self.restarted = restarted
        self.extra = extra or {}

    @classmethod
    def new(cls, names: list[str]) -> EpochSums:
        return cls({name: 0.0 for name in names})

    @classmethod
    def restore(cls, saved: dict) -> EpochSums:
        return cls(dict(saved["sums"]), int(saved["restarted"]), dict(saved["extra"]))

    def add(self, metrics: dict) -> None:
        self.sums = {name: self.sums[name] + metrics[name] for name in self.sums}

    def means(self, steps: int) -> dict[str, float]:
        return {name: float(value) / steps for name, value in self.sums.items()}

    def to_save(self) -> dict:
        return {
            "sums": {name: float(value) for name, value in self.sums.items()},
            "restarted": self.restarted,
            "extra": {name: np.asarray(value) for name, value in self.extra.items()},
        }


def make_restart_step(graphdef):
    """Jitted `(state, inputs, key) -> (state, num_restarted)`: move codes unused since the last
    restart (state["usage"] == 0) onto encoder outputs of `inputs`, then start counting usage again."""

    @partial(jax.jit, donate_argnums=0)
    def restart_step(state, inputs, key):
        model = nnx.merge(graphdef, state["trainable"], state["frozen"])
        num_restarted = model.restart_dead_codes(state["usage"], inputs, key)
        return {
            **state,
            "trainable": nnx.state(model, nnx.Param),
            "usage": jnp.zeros_like(state["usage"]),
        }, num_restarted

    return restart_step


def train_state_to_save(state: dict, epoch: int, **extra) -> dict:
    """Plain data for --resume: fp32 trainable params, the optimizer state's leaves in tree order
    (rebuilt with `restore_tree` against a fresh optimizer state), epoch, extras."""
    return {
        "params": nnx.to_pure_dict(state["trainable"]),
        "opt_state": jax.tree.leaves(state["opt_state"]),
        "epoch": epoch,
        **extra,
    }


def resume_from(path: Path, kind: str, resume: bool) -> dict | None:
    """The checkpoint to continue from, or None to start fresh."""
    if not resume:
        return None
    if not path.is_file():
        print(f"--resume: no {path} yet, starting {kind} training from scratch")
        return None
    try:
        ckpt = load_checkpoint(path, kind)
    except CheckpointError as err:
        raise fail(str(err)) from None
    if ckpt["train_state"] is None:
        raise fail(f"--resume: {path} has no train_state (it was saved for inference only)")
    return ckpt


def is_eval_epoch(epoch: int, eval_every: int, epochs: int) -> bool:
    """Whether the epoch just finished (0-based) is evaluated: every `eval_every` epochs and the last."""
    return (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
