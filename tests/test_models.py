"""Model shapes, quantizer properties and the Bradley-Terry loss, at tiny sizes."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.build import abstract, build
from models.checkpoint import params_of, restore_params
from models.lam import LAMConfig, LatentActionModel
from models.policy import PolicyConfig, make_policy
from models.quantizers import KINDS, QuantizerConfig, make_quantizer
from models.resnet import ResNet34, ResNetConfig
from models.reward import RewardConfig, RewardModel, bradley_terry_loss, pairwise_accuracy, reward_loss
from models.transformer import TokenTransformer, TransformerConfig, dynamics_loss
from models.video_tokenizer import VideoTokenizer, VideoTokenizerConfig
from models.vqvae import VQVAE, VQVAEConfig, depth_to_space, tokenizer_loss

TINY_VQVAE = VQVAEConfig(
    embed_dim=8, encoder_channels=(4, 8), image_hw=(16, 16), quantizer=QuantizerConfig(codebook_size=16)
)
TINY_RESNET = ResNetConfig(stage_sizes=(1, 1), widths=(4, 8), stem_width=4, norm_groups=2)


def latents(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("kind", KINDS)
def test_quantizer_shapes(kind):
    cfg = QuantizerConfig(kind=kind, dim=8, codebook_size=16, levels=(3, 4))
    quantizer = make_quantizer(cfg, nnx.Rngs(0))
    z_q, indices, aux = quantizer(latents((2, 3, 4, 8)), jax.random.key(1))
    assert z_q.shape == (2, 3, 4, 8)
    assert indices.shape == (2, 3, 4) and indices.dtype == jnp.int32
    assert int(indices.min()) >= 0 and int(indices.max()) < cfg.vocab_size == quantizer.codebook_size
    assert aux["loss"].shape == () and np.isfinite(float(aux["loss"]))
    assert 1.0 <= float(aux["perplexity"]) <= cfg.vocab_size


def test_vq_straight_through_gradient_and_losses():
    quantizer = make_quantizer(QuantizerConfig(kind="vq", dim=8, codebook_size=16), nnx.Rngs(0))
    z = latents((5, 8))
    (z_q, indices, aux), vjp = jax.vjp(lambda z: quantizer(z), z)
    codes = quantizer.codebook[...][indices]
    np.testing.assert_allclose(z_q, codes, rtol=1e-6, atol=1e-6)  # forward: the nearest code
    cotangent = latents((5, 8), seed=3)
    zero_aux = jax.tree.map(jnp.zeros_like, aux)
    (dz,) = vjp((cotangent, np.zeros((5,), jax.dtypes.float0), zero_aux))
    np.testing.assert_allclose(dz, cotangent, rtol=1e-6)  # backward: identity
    squared_error = float(jnp.mean((z - codes) ** 2))
    np.testing.assert_allclose(float(aux["loss"]), 1.25 * squared_error, rtol=1e-5)


def test_fsq_code_count_is_product_of_levels():
    levels = (3, 4, 5)
    quantizer = make_quantizer(QuantizerConfig(kind="fsq", dim=8, levels=levels), nnx.Rngs(0))
    assert quantizer.codebook_size == math.prod(levels) == 60
    all_indices = jnp.arange(60)
    codes = quantizer.indices_to_codes(all_indices)
    assert len({tuple(c) for c in np.asarray(codes).tolist()}) == 60  # one distinct code per index
    np.testing.assert_array_equal(quantizer.codes_to_indices(codes), all_indices)
    # Every level combination is reachable from the continuous side, and nothing lands outside.
    _, reached = quantizer.quantize_codes(
        jax.random.uniform(jax.random.key(0), (20000, 3), minval=-4, maxval=4)
    )
    assert set(np.asarray(reached).tolist()) == set(range(60))


def test_nsvq_output_distance_equals_quantization_error():
    quantizer = make_quantizer(QuantizerConfig(kind="nsvq", dim=8, codebook_size=16), nnx.Rngs(0))
    z = latents((64, 8))
    z_q, indices, _ = quantizer(z, jax.random.key(7))
    codes = quantizer.codebook[...][indices]
    np.testing.assert_allclose(
        jnp.linalg.norm(z_q - z, axis=-1), jnp.linalg.norm(z - codes, axis=-1), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(z_q, codes)  # training output is the noisy substitute...
    hard, _, _ = quantizer(z, None)
    np.testing.assert_allclose(hard, codes)  # ...evaluation output the code itself


@pytest.mark.parametrize("kind", ["vq", "nsvq"])
def test_dead_code_restart_revives_unused_codes(kind):
    quantizer = make_quantizer(QuantizerConfig(kind=kind, dim=8, codebook_size=32), nnx.Rngs(0))
    z = 3.0 + latents((256, 8))  # far from the small initial codebook: few codes win
    _, indices, _ = quantizer(z, None)
    usage = jnp.bincount(indices, length=32)
    used_before = int(jnp.sum(usage > 0))
    assert used_before < 32
    old_codebook = np.asarray(quantizer.codebook[...])
    num_revived = quantizer.restart_dead_codes(usage, z, jax.random.key(1))
    assert int(num_revived) == 32 - used_before
    new_codebook = np.asarray(quantizer.codebook[...])
    alive = np.asarray(usage > 0)
    np.testing.assert_array_equal(new_codebook[alive], old_codebook[alive])
    dead_rows = new_codebook[~alive]
    assert all(np.any(np.all(np.isclose(row, np.asarray(z)), axis=1)) for row in dead_rows)
    _, indices_after, _ = quantizer(z, None)
    assert int(jnp.sum(jnp.bincount(indices_after, length=32) > 0)) > used_before


@pytest.mark.parametrize("kind", ["vq", "fsq", "nsvq"])
def test_tiny_vqvae_shapes_and_loss(kind):
    cfg = VQVAEConfig(
        embed_dim=8,
        encoder_channels=(4, 8),
        image_hw=(16, 24),
        quantizer=QuantizerConfig(kind=kind, levels=(3, 4)),
    )
    model = VQVAE(cfg, rngs=nnx.Rngs(0))
    frames = jax.random.randint(jax.random.key(0), (2, 16, 24, 3), 0, 256).astype(jnp.uint8)
    recon, indices, aux = nnx.jit(lambda m, x, k: m(x, k))(model, frames, jax.random.key(1))
    assert cfg.grid == (4, 6)
    assert recon.shape == (2, 16, 24, 3) and recon.dtype == jnp.float32
    assert indices.shape == (2, 4, 6)
    z_q, _, _ = model.encode(frames, None)
    np.testing.assert_allclose(model.embed_indices(indices), z_q, rtol=1e-5, atol=1e-5)
    loss, metrics = nnx.jit(tokenizer_loss)(model, frames, jax.random.key(1))
    assert np.isfinite(float(loss)) and float(metrics["recon_mse"]) > 0


def test_depth_to_space_puts_each_positions_channels_in_its_own_2x2_block():
    # One position (row 1, col 0) of a 2x3 map with 4 x 2 channels: channel group k -> pixel (k // 2, k % 2).
    x = jnp.zeros((1, 2, 3, 8)).at[0, 1, 0].set(jnp.arange(8.0))
    y = depth_to_space(x)
    assert y.shape == (1, 4, 6, 2)
    np.testing.assert_array_equal(y[0, 2:4, 0:2], [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    assert float(jnp.abs(y).sum()) == float(jnp.arange(8.0).sum())  # nothing else is written


def test_vqvae_rejects_wrong_frame_size():
    model = VQVAE(TINY_VQVAE, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="image_hw"):
        model.encode(jnp.zeros((1, 20, 16, 3)))
    with pytest.raises(ValueError, match="divisible"):
        VQVAEConfig(image_hw=(100, 160))


def test_real_size_encoder_gives_9x10_grid():
    model = VQVAE(VQVAEConfig(), rngs=nnx.Rngs(0))
    frames = jnp.zeros((1, 144, 160, 3), jnp.uint8)
    z_q, indices, _ = nnx.jit(lambda m, x: m.encode(x))(model, frames)
    assert z_q.shape == (1, 9, 10, 192) and indices.shape == (1, 9, 10)
    assert model.quantizer.codebook[...].shape == (512, 192)


def test_transformer_shapes_and_features():
    cfg = TransformerConfig(vocab_size=16, embed_dim=8, num_layers=2, num_heads=2, mlp_ratio=3, grid=(3, 4))
    model = TokenTransformer(cfg, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (2, 3, 4), 0, 16)

    @nnx.jit
    def run(model, tokens):
        # Embeddings instead of ids is the policy's path; embedding the ids by hand must match.
        from_embeddings = model.features(model.token_embed(tokens))
        return model(tokens), model.features(tokens), from_embeddings, dynamics_loss(model, tokens, tokens)

    logits, features, from_embeddings, (loss, metrics) = run(model, tokens)
    assert logits.shape == (2, 3, 4, 16) and logits.dtype == jnp.float32
    assert features.shape == (2, 12, 8)
    np.testing.assert_allclose(from_embeddings, features, rtol=1e-5, atol=1e-5)
    assert float(metrics["copy_accuracy"]) == 1.0 and np.isfinite(float(loss))
    with pytest.raises(ValueError, match="grid"):
        model(jnp.zeros((1, 4, 3), jnp.int32))
    projected = TokenTransformer(
        TransformerConfig(vocab_size=16, embed_dim=8, num_layers=1, num_heads=2, grid=(3, 4), input_dim=5),
        rngs=nnx.Rngs(0),
    )
    assert projected.features(jnp.ones((2, 3, 4, 5))).shape == (2, 12, 8)


def test_default_transformer_param_count():
    model = nnx.eval_shape(lambda: TokenTransformer(TransformerConfig(), rngs=nnx.Rngs(0)))
    count = sum(x.size for x in jax.tree.leaves(params_of(model)))
    assert 1_000_000 < count < 10_000_000


def test_resnet_shapes():
    model = ResNet34(TINY_RESNET, rngs=nnx.Rngs(0))
    frames = jax.random.randint(jax.random.key(0), (3, 32, 40, 3), 0, 256).astype(jnp.uint8)
    scores = nnx.jit(lambda m, x: m(x))(model, frames)
    assert scores.shape == (3,) and scores.dtype == jnp.float32
    # The default config is ResNet-34: 3 + 4 + 6 + 3 basic blocks.
    assert sum(ResNetConfig().stage_sizes) == 16


@pytest.mark.parametrize("backbone", ["resnet34", "vq"])
def test_reward_model_scores_uint8_frames(backbone):
    model = RewardModel(
        RewardConfig(backbone=backbone, resnet=TINY_RESNET, tokenizer=TINY_VQVAE), rngs=nnx.Rngs(0)
    )
    frames = jax.random.randint(jax.random.key(0), (4, 16, 16, 3), 0, 256).astype(jnp.uint8)
    scores = nnx.jit(lambda m, x: m.score(x))(model, frames)
    assert scores.shape == (4,) and scores.dtype == jnp.float32
    trainable = nnx.to_pure_dict(nnx.state(model, model.trainable_filter()))
    assert set(trainable) == ({"resnet"} if backbone == "resnet34" else {"head"})


def test_vq_reward_trains_its_head_on_token_ids_and_the_encoder_gets_no_gradient():
    model = RewardModel(RewardConfig(backbone="vq", tokenizer=TINY_VQVAE), rngs=nnx.Rngs(0))
    frames = jax.random.randint(jax.random.key(0), (4, 16, 16, 3), 0, 256).astype(jnp.uint8)
    observations = nnx.jit(lambda m, x: m.observe(x))(model, frames)
    assert observations.shape == (4, *TINY_VQVAE.grid) and observations.dtype == jnp.int32
    from_tokens = nnx.jit(lambda m, x: m.score_observations(x))(model, observations)
    np.testing.assert_allclose(
        from_tokens, nnx.jit(lambda m, x: m.score(x))(model, frames), rtol=1e-5, atol=1e-6
    )
    grads = nnx.jit(nnx.grad(lambda m: reward_loss(m, observations[:2], observations[2:])[0]))(model)
    grads = nnx.to_pure_dict(grads)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["encoder"]))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["head"]))


def test_event_features_are_a_bounded_noisy_or_over_the_seen_tokens():
    """Each feature is 1 - prod over seen tokens v of exp(-softplus(l_v)): 0 for an empty bag, in
    [0, 1], never lower for a bag that holds more, and the head reads `events` of them, not the bag."""
    vocab, events = TINY_VQVAE.vocab_size, 3
    model = RewardModel(
        RewardConfig(backbone="vq", tokenizer=TINY_VQVAE, seen_tokens=True, events=events), rngs=nnx.Rngs(0)
    )
    head = model.head
    head.event_logits[...] = jax.random.normal(jax.random.key(1), (vocab, events)) * 3
    rng = np.random.default_rng(0)
    bags = (rng.random((6, vocab)) < 0.3).astype(np.uint8)
    bags[0] = 0
    more = bags | (rng.random((6, vocab)) < 0.3).astype(np.uint8)
    features, more_features = np.asarray(head.event_features(bags)), np.asarray(head.event_features(more))
    logits = np.asarray(head.event_logits[...], np.float64)
    by_hand = 1 - np.prod(np.where(bags[:, :, None], np.exp(-np.logaddexp(0, logits)), 1.0), axis=1)
    np.testing.assert_allclose(features, by_hand, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(features[0], 0)
    assert (features >= 0).all() and (more_features <= 1).all() and (more_features >= features - 1e-6).all()
    assert head.hidden.in_features == np.prod(TINY_VQVAE.grid) * RewardConfig().head_reduce_dim + events
    tokens = jnp.zeros((6, *TINY_VQVAE.grid), jnp.int32)
    assert model.score_observations(tokens, jnp.asarray(bags)).shape == (6,)
    with pytest.raises(ValueError, match="only with seen_tokens"):
        RewardConfig(backbone="vq", tokenizer=TINY_VQVAE, events=2)


def test_bradley_terry_loss_matches_hand_computation():
    s_earlier = jnp.array([0.0, 1.0, 2.0])
    s_later = jnp.array([1.0, 0.0, 2.0])
    # -log sigmoid(s_later - s_earlier) for differences +1, -1, 0.
    by_hand = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1)) + math.log(2)) / 3
    np.testing.assert_allclose(float(bradley_terry_loss(s_earlier, s_later)), by_hand, rtol=1e-6)
    np.testing.assert_allclose(float(pairwise_accuracy(s_earlier, s_later)), 1 / 3)


def test_bfloat16_compute_keeps_fp32_weights_and_outputs():
    """The GPU default: activations in bf16, master weights, quantizer, logits and scores in fp32."""
    tokenizer = VQVAE(dataclasses.replace(TINY_VQVAE, dtype="bfloat16"), rngs=nnx.Rngs(0))
    dynamics = TokenTransformer(
        TransformerConfig(
            vocab_size=16, embed_dim=8, num_layers=1, num_heads=2, grid=(4, 4), dtype="bfloat16"
        ),
        rngs=nnx.Rngs(0),
    )
    resnet = ResNet34(dataclasses.replace(TINY_RESNET, dtype="bfloat16"), rngs=nnx.Rngs(0))
    frames = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))

    @nnx.jit
    def run(tokenizer, dynamics, resnet, frames):
        loss, _ = tokenizer_loss(tokenizer, frames, None)
        _, indices, _ = tokenizer.encode(frames)
        return loss, dynamics(indices), resnet(frames)

    loss, logits, scores = run(tokenizer, dynamics, resnet, frames)
    assert loss.dtype == logits.dtype == scores.dtype == jnp.float32
    assert np.isfinite(float(loss)) and np.all(np.isfinite(logits)) and np.all(np.isfinite(scores))
    for model in (tokenizer, dynamics, resnet):
        assert {x.dtype for x in jax.tree.leaves(params_of(model))} == {jnp.dtype(jnp.float32)}


BUILT_MODELS = {
    "tokenizer": lambda: VQVAE(TINY_VQVAE, rngs=nnx.Rngs(3)),
    # normal(0.02) position embeddings: XLA's algebraic simplifier would fold their two scales.
    "dynamics": lambda: TokenTransformer(
        TransformerConfig(vocab_size=16, embed_dim=8, num_layers=1, num_heads=2, grid=(1, 1)),
        rngs=nnx.Rngs(3),
    ),
    "vq reward": lambda: RewardModel(RewardConfig(backbone="vq", tokenizer=TINY_VQVAE), rngs=nnx.Rngs(3)),
    "vq policy": lambda: make_policy(
        PolicyConfig(
            encoder=TINY_VQVAE,
            transformer=TransformerConfig(
                vocab_size=16, embed_dim=8, num_layers=1, num_heads=2, grid=TINY_VQVAE.grid
            ),
        ),
        nnx.Rngs(jax.random.key(3)),
    ),
    "vit policy": lambda: make_policy(
        PolicyConfig(
            kind="vit", transformer=TransformerConfig(vocab_size=16, embed_dim=8, num_layers=1, num_heads=2)
        ),
        nnx.Rngs(3),
    ),
    "resnet reward": lambda: RewardModel(
        RewardConfig(backbone="resnet34", resnet=TINY_RESNET), rngs=nnx.Rngs(3)
    ),
    "latent actions": lambda: LatentActionModel(
        LAMConfig(channels=(4, 8), action_dim=4, pool=4), rngs=nnx.Rngs(3)
    ),
    "video tokenizer": lambda: VideoTokenizer(
        VideoTokenizerConfig(frame=TINY_VQVAE, num_frames=2), rngs=nnx.Rngs(3)
    ),
}


@pytest.mark.parametrize("name", BUILT_MODELS)
def test_build_gives_the_eager_init_bit_for_bit(name):
    make = BUILT_MODELS[name]
    eager, built = nnx.state(make()), nnx.state(build(make))
    assert jax.tree.structure(built) == jax.tree.structure(eager)
    for mine, theirs in zip(jax.tree.leaves(built), jax.tree.leaves(eager)):
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


def test_abstract_model_restores_every_parameter_and_refuses_other_state():
    make = BUILT_MODELS["tokenizer"]
    source = make()
    shell = abstract(make)
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(nnx.state(shell)))
    restored = restore_params(shell, params_of(source))
    frames = jnp.full((1, 16, 16, 3), 0.5)
    np.testing.assert_array_equal(restored.encode(frames)[1], source.encode(frames)[1])

    class WithCounter(nnx.Module):
        def __init__(self):
            self.linear = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
            self.count = nnx.BatchStat(jnp.zeros(()))

    with pytest.raises(ValueError, match="not a parameter"):
        restore_params(abstract(WithCounter), params_of(WithCounter()))


def test_a_residual_block_starts_as_the_identity_and_normalises_its_input():
    """Its last conv starts at zero, so a deep tokenizer starts no larger than a shallow one; its group
    norms keep the activations at unit scale whatever the input's (unnormalised, they diverged)."""
    from models.vqvae import ResidualBlock

    block = ResidualBlock(32, jnp.float32, nnx.Rngs(0))
    x = 100.0 * jax.random.normal(jax.random.key(0), (2, 9, 10, 32))
    np.testing.assert_array_equal(block(x), x)
    normed = block.norm1(x)
    assert abs(float(normed.std()) - 1.0) < 0.05


def test_the_gray_view_of_an_encoder_gives_the_rgb_encoders_tokens_on_gray_frames():
    """A gray-palette game's RGB frame has equal channels; the gray encoder (first conv summed over
    the colours) reads its one channel and computes the same latents, so the same tokens."""
    from models.checkpoint import params_of
    from models.vqvae import VQEncoder, gray_encoder

    cfg = VQVAEConfig(embed_dim=8, encoder_channels=(4, 8, 8, 8), quantizer=QuantizerConfig(codebook_size=32))
    rgb = VQEncoder(cfg, rngs=nnx.Rngs(3))
    gray_cfg, gray_params = gray_encoder(cfg, params_of(rgb))
    gray = restore_params(abstract(lambda: VQEncoder(gray_cfg, rngs=nnx.Rngs(0))), gray_params)
    shades = np.array([255, 153, 85, 0], np.uint8)  # PyBoy's gray palette
    frames = shades[np.random.default_rng(0).integers(0, 4, (6, 144, 160, 1))]
    z_rgb = rgb.latents(np.repeat(frames, 3, axis=-1))
    np.testing.assert_allclose(gray.latents(frames), z_rgb, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gray.encode(frames)[1], rgb.encode(np.repeat(frames, 3, axis=-1))[1])


def test_pooled_tokens_merge_each_window_and_the_head_splits_it_back_in_grid_order():
    """With (3, 2) windows, token (r, c) of the blocks holds cells (3r..3r+2, 2c..2c+1), and the
    dynamics head gives each cell of a window its own slice of that token."""
    cfg = TransformerConfig(vocab_size=8, embed_dim=4, num_layers=0, num_heads=1, pool=(3, 2))
    model = TokenTransformer(cfg, rngs=nnx.Rngs(0))
    assert model.num_tokens == 15
    # Embeddings that name their cell; positions off; the merge keeps the window's first cell.
    cell = np.arange(90, dtype=np.float32).reshape(9, 10)
    embeddings = np.zeros((1, 9, 10, 4), np.float32)
    embeddings[..., 0] = cell
    model.row_embed[...] = jnp.zeros_like(model.row_embed[...])
    model.col_embed[...] = jnp.zeros_like(model.col_embed[...])
    model.merge.kernel[...] = jnp.eye(24, 4)
    model.merge.bias[...] = jnp.zeros(4)
    model.norm = lambda x: x  # the blocks' output, unnormalised, to read it
    merged = np.asarray(model.features(jnp.asarray(embeddings)))[0, :, 0]
    np.testing.assert_array_equal(merged, cell[::3, ::2].ravel())
    # Split: slot k of a window reads component 0 of the token; the head reads component 0.
    model.split.kernel[...] = jnp.zeros((4, 24)).at[0, 0::4].set(1.0)
    model.split.bias[...] = jnp.zeros(24)
    model.head.kernel[...] = jnp.zeros((4, 8)).at[0, :].set(1.0)
    model.head.bias[...] = jnp.zeros(8)
    tokens = jnp.zeros((1, 9, 10), jnp.int32)
    model.token_embed.embedding[...] = jnp.zeros((8, 4))
    model.features = lambda x: jnp.asarray(cell[::3, ::2].reshape(1, 15, 1) * np.eye(1, 4, dtype=np.float32))
    logits = np.asarray(model(tokens))[0, :, :, 0]
    np.testing.assert_array_equal(logits, np.repeat(np.repeat(cell[::3, ::2], 3, axis=0), 2, axis=1))
