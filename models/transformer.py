"""Token transformer over the 9x10 token grid: the dynamics model, and the policy's trunk.

As a dynamics model it reads the tokens of frame t and predicts, for each of the 90 grid
cells, the token of frame t+1 (`__call__` -> logits). The policy reuses the same blocks
through `features`, which also accepts codebook embeddings instead of token ids, so it can
start from the dynamics weights. Attention is bidirectional: every cell of the next frame
may depend on every cell of the current one.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from models.build import abstract
from models.checkpoint import config_from_dict, load_checkpoint, restore_params


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 512
    """Token ids the model reads and predicts (the tokenizer's vocabulary)."""
    embed_dim: int = 192
    """Width of the residual stream."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads per block."""
    mlp_ratio: int = 3
    """MLP hidden width as a multiple of embed_dim."""
    grid: tuple[int, int] = (9, 10)
    """Token grid (rows, cols); one learned embedding per row and per column."""
    pool: tuple[int, int] = (1, 1)
    """Merge each (rows, cols) window of cells into one token before the blocks (the grid must divide):
    (3, 2) runs the blocks on 15 tokens instead of 90, ~6x less arithmetic. The dynamics head splits
    each token back into its cells."""
    input_dim: int | None = None
    """Width of embeddings given to `features` instead of ids; None means embed_dim (no projection)."""
    dtype: str = "float32"
    """Compute dtype ("float32" or "bfloat16"); weights stay fp32."""


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.dtype)
        width, hidden = cfg.embed_dim, cfg.embed_dim * cfg.mlp_ratio
        self.norm1 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(cfg.num_heads, width, decode=False, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.fc1 = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x))))


class TokenTransformer(nnx.Module):
    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        rows, cols = cfg.grid
        if rows % cfg.pool[0] or cols % cfg.pool[1]:
            raise ValueError(f"pool {cfg.pool} does not divide the token grid {cfg.grid}")
        self.cfg = cfg
        dtype = jnp.dtype(cfg.dtype)
        rows, cols = cfg.grid
        init = nnx.initializers.normal(0.02)
        self.token_embed = nnx.Embed(cfg.vocab_size, cfg.embed_dim, dtype=dtype, rngs=rngs)
        # 2-D position: a learned row vector plus a learned column vector per cell.
        self.row_embed = nnx.Param(init(rngs.params(), (rows, 1, cfg.embed_dim)))
        self.col_embed = nnx.Param(init(rngs.params(), (1, cols, cfg.embed_dim)))
        self.input_proj = (
            nnx.Linear(cfg.input_dim, cfg.embed_dim, dtype=dtype, rngs=rngs)
            if cfg.input_dim is not None
            else None
        )
        cells = cfg.pool[0] * cfg.pool[1]
        # Patch merging: a window's cells side by side, projected to one token (and back for the head).
        self.merge = (
            nnx.Linear(cells * cfg.embed_dim, cfg.embed_dim, dtype=dtype, rngs=rngs) if cells > 1 else None
        )
        self.split = (
            nnx.Linear(cfg.embed_dim, cells * cfg.embed_dim, dtype=dtype, rngs=rngs) if cells > 1 else None
        )
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
        self.norm = nnx.LayerNorm(cfg.embed_dim, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(cfg.embed_dim, cfg.vocab_size, dtype=dtype, rngs=rngs)

    @property
    def num_tokens(self) -> int:
        """Tokens the blocks run on: the grid's cells, or its pooled windows."""
        (rows, cols), (pr, pc) = self.cfg.grid, self.cfg.pool
        return rows // pr * (cols // pc)

    def features(self, tokens_or_embeddings: jax.Array) -> jax.Array:
        """Token ids (B, rows, cols) or embeddings (B, rows, cols, input_dim) -> hidden states
        (B, num_tokens, D): one per cell, or per pooled window."""
        x = tokens_or_embeddings
        expected = tuple(self.cfg.grid)
        if tuple(x.shape[1:3]) != expected:
            raise ValueError(f"input of shape {x.shape} does not match the token grid {expected}")
        if jnp.issubdtype(x.dtype, jnp.integer):
            x = self.token_embed(x)
        elif self.input_proj is not None:
            x = self.input_proj(x)
        elif x.shape[-1] != self.cfg.embed_dim:
            raise ValueError(
                f"embeddings of width {x.shape[-1]} need TransformerConfig.input_dim={x.shape[-1]} "
                f"(embed_dim is {self.cfg.embed_dim})"
            )
        x = x + (self.row_embed[...] + self.col_embed[...]).astype(x.dtype)
        if self.merge is not None:  # (B, R, C, D) -> (B, R/pr, C/pc, pr*pc*D) -> (B, R/pr, C/pc, D)
            (rows, cols), (pr, pc) = self.cfg.grid, self.cfg.pool
            x = x.reshape(x.shape[0], rows // pr, pr, cols // pc, pc, self.cfg.embed_dim).transpose(
                0, 1, 3, 2, 4, 5
            )
            x = self.merge(x.reshape(*x.shape[:3], -1))
        x = x.reshape(x.shape[0], -1, self.cfg.embed_dim)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Tokens of frame t (B, rows, cols) -> logits for frame t+1 (B, rows, cols, vocab), float32."""
        x = self.features(tokens)
        if self.split is not None:  # each pooled token back into its window's cells, in grid order
            (rows, cols), (pr, pc) = self.cfg.grid, self.cfg.pool
            x = self.split(x).reshape(x.shape[0], rows // pr, cols // pc, pr, pc, self.cfg.embed_dim)
            x = x.transpose(0, 1, 3, 2, 4, 5)
        logits = self.head(x).astype(jnp.float32)
        return logits.reshape(*tokens.shape[:3], self.cfg.vocab_size)


def dynamics_loss(model: TokenTransformer, tokens: jax.Array, next_tokens: jax.Array):
    """Cross-entropy of the next frame's tokens. Returns (loss, metrics).

    `copy_accuracy` is the score of predicting "nothing changes": consecutive frames often
    match, so accuracy only means something beside it.
    """
    logits = model(tokens)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, next_tokens).mean()
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == next_tokens),
        "copy_accuracy": jnp.mean(tokens == next_tokens),
    }
    return loss, metrics


def load_dynamics(path) -> TokenTransformer:
    """A TokenTransformer rebuilt from a 'dynamics' checkpoint."""
    ckpt = load_checkpoint(path, "dynamics")
    cfg = config_from_dict(TransformerConfig, ckpt["config"])
    return restore_params(
        abstract(lambda: TokenTransformer(cfg, rngs=nnx.Rngs(0))), ckpt["params"], source=str(path)
    )
