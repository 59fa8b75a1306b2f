"""Checkpoint I/O: bf16 round trip, refusal of unsafe pickles, clear errors for wrong kinds and shapes."""

import os
import pickle

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from flax import nnx

from models.checkpoint import (
    CheckpointError,
    config_from_dict,
    load_checkpoint,
    params_of,
    restore_params,
    restore_tree,
    save_checkpoint,
)
from models.quantizers import QuantizerConfig
from models.reward import RewardConfig, RewardModel, load_reward
from models.transformer import TokenTransformer, TransformerConfig, load_dynamics
from models.vqvae import VQVAE, VQVAEConfig, encoder_params, load_encoder, load_tokenizer

TINY = VQVAEConfig(
    embed_dim=8, encoder_channels=(4, 8), image_hw=(16, 16), quantizer=QuantizerConfig(codebook_size=16)
)


@pytest.fixture(scope="module")
def tokenizer():
    return VQVAE(TINY, rngs=nnx.Rngs(0))


def test_round_trip_in_bf16(tokenizer, tmp_path):
    params = params_of(tokenizer)
    opt_state = optax.adam(1e-3).init(params)
    path = save_checkpoint(
        tmp_path / "tok.pkl",
        kind="tokenizer",
        config=TINY,
        params=params,
        step=7,
        train_state={"opt_state": opt_state, "rng": jax.random.key(3), "epoch": 2},
    )
    assert os.listdir(tmp_path) == ["tok.pkl"]  # the temp file is gone
    ckpt = load_checkpoint(path, "tokenizer")
    assert ckpt["format"] == 1 and ckpt["step"] == 7
    assert config_from_dict(VQVAEConfig, ckpt["config"]) == TINY
    saved, original = jax.tree.leaves(ckpt["params"]), jax.tree.leaves(params)
    assert len(saved) == len(original)
    for s, o in zip(saved, original):
        assert isinstance(s, np.ndarray) and s.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(s, np.asarray(o).astype(ml_dtypes.bfloat16))
    # Restoring through the stored config gives the bf16-rounded weights back as fp32.
    restored = load_tokenizer(path)
    for r, o in zip(jax.tree.leaves(params_of(restored)), original):
        assert r.dtype == jnp.float32
        np.testing.assert_array_equal(r, np.asarray(o).astype(ml_dtypes.bfloat16).astype(np.float32))
    # The train state keeps full precision and its optax / PRNG structure.
    train_state = ckpt["train_state"]
    assert train_state["epoch"] == 2
    opt_restored = restore_tree(opt_state, train_state["opt_state"])
    assert jax.tree.structure(opt_restored) == jax.tree.structure(opt_state)
    for r, o in zip(jax.tree.leaves(opt_restored), jax.tree.leaves(opt_state)):
        np.testing.assert_array_equal(r, o)
    key = restore_tree(jax.random.key(0), train_state["rng"])
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(3)))
    # The encoder-only subset loads as a VQEncoder, from either file kind.
    save_checkpoint(tmp_path / "enc.pkl", kind="encoder", config=TINY, params=encoder_params(params), step=7)
    for source in ("enc.pkl", "tok.pkl"):
        encoder = load_encoder(tmp_path / source)
        assert "decoder" not in nnx.to_pure_dict(nnx.state(encoder, nnx.Param))


class RunsShellOnLoad:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalsOnLoad:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = RunsShellOnLoad(marker) if payload == "os.system" else EvalsOnLoad()
    path = tmp_path / "evil.pkl"
    # Hidden inside an otherwise valid-looking checkpoint dict.
    path.write_bytes(
        pickle.dumps({"format": 1, "kind": "tokenizer", "config": {}, "params": {"w": evil}, "step": 0})
    )
    with pytest.raises(CheckpointError, match=r"refused to load.*(system|eval)"):
        load_checkpoint(path, "tokenizer")
    assert not marker.exists()


def test_wrong_kind_fails_clearly(tmp_path):
    cfg = TransformerConfig(vocab_size=16, embed_dim=8, num_layers=1, num_heads=2, grid=(3, 4))
    model = nnx.eval_shape(lambda: TokenTransformer(cfg, rngs=nnx.Rngs(0)))
    params = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), params_of(model))
    path = save_checkpoint(tmp_path / "dyn.pkl", kind="dynamics", config=cfg, params=params, step=1)
    with pytest.raises(CheckpointError, match=r"dyn.pkl is a 'dynamics' checkpoint, expected 'tokenizer'"):
        load_tokenizer(path)
    assert isinstance(load_dynamics(path), TokenTransformer)
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(tmp_path / "x.pkl", kind="tokeniser", config={}, params={}, step=0)


def test_mismatched_shapes_fail_clearly(tokenizer, tmp_path):
    params = params_of(tokenizer)
    bigger = VQVAEConfig(**{**TINY.__dict__, "quantizer": QuantizerConfig(codebook_size=32, dim=8)})
    # Config says 32 codes, params hold 16: the error names the parameter and both shapes.
    path = save_checkpoint(tmp_path / "bad.pkl", kind="tokenizer", config=bigger, params=params, step=0)
    with pytest.raises(CheckpointError, match=r"quantizer/codebook has shape \(16, 8\).*expects \(32, 8\)"):
        load_tokenizer(path)
    missing = {k: v for k, v in params.items() if k != "decoder"}
    with pytest.raises(CheckpointError, match="decoder.*missing"):
        restore_params(VQVAE(TINY, rngs=nnx.Rngs(1)), missing)


def test_unreadable_files_fail_clearly(tokenizer, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pkl", "tokenizer")
    path = save_checkpoint(
        tmp_path / "tok.pkl", kind="tokenizer", config=TINY, params=params_of(tokenizer), step=0
    )
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable EmuRL checkpoint"):
        load_checkpoint(truncated, "tokenizer")


def test_failed_save_keeps_the_previous_file(tokenizer, tmp_path):
    path = save_checkpoint(
        tmp_path / "tok.pkl", kind="tokenizer", config=TINY, params=params_of(tokenizer), step=1
    )
    before = path.read_bytes()
    with pytest.raises(TypeError, match="train_state/optimizer"):
        save_checkpoint(
            path, kind="tokenizer", config=TINY, params={}, step=2, train_state={"optimizer": object()}
        )
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["tok.pkl"]


def test_reward_checkpoint_rebuilds_nested_config(tokenizer, tmp_path):
    """A "vq" reward model takes its encoder from a tokenizer file and round-trips with nested configs."""
    tok_path = save_checkpoint(
        tmp_path / "tok.pkl", kind="tokenizer", config=TINY, params=params_of(tokenizer), step=0
    )
    encoder = load_encoder(tok_path)
    model = RewardModel(RewardConfig(backbone="vq", tokenizer=encoder.cfg, head_hidden=8), rngs=nnx.Rngs(0))
    restore_params(model.encoder, params_of(encoder), source=str(tok_path))
    expected_encoder = encoder_params(params_of(tokenizer))
    for got, want in zip(jax.tree.leaves(params_of(model.encoder)), jax.tree.leaves(expected_encoder)):
        np.testing.assert_array_equal(got, np.asarray(want).astype(ml_dtypes.bfloat16).astype(np.float32))
    path = save_checkpoint(
        tmp_path / "reward_vq.pkl", kind="reward", config=model.cfg, params=params_of(model), step=3
    )
    restored = load_reward(path)
    assert restored.cfg == model.cfg and restored.cfg.tokenizer == TINY
    for got, want in zip(jax.tree.leaves(params_of(restored)), jax.tree.leaves(params_of(model))):
        np.testing.assert_array_equal(got, np.asarray(want).astype(ml_dtypes.bfloat16).astype(np.float32))
