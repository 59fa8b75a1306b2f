"""The token cache returns the frozen encoder's own tokens, encodes each new frame once, and compiles
for a handful of batch sizes."""

import jax
import numpy as np
import pytest
from flax import nnx

from models.quantizers import QuantizerConfig
from models.vqvae import VQEncoder, VQVAEConfig
from training.token_cache import TokenCache

CFG = VQVAEConfig(
    embed_dim=8, encoder_channels=(4, 4, 8, 8), quantizer=QuantizerConfig(codebook_size=16), channels=1
)


@pytest.fixture(scope="module")
def encode():
    graphdef, state = nnx.split(VQEncoder(CFG, rngs=nnx.Rngs(0)))
    return jax.jit(lambda frames: nnx.merge(graphdef, state).encode(frames, None)[1])


def test_the_cache_returns_the_encoders_tokens_and_encodes_each_frame_once(encode):
    rng = np.random.default_rng(0)
    screens = rng.integers(0, 255, (5, 144, 160, 1), dtype=np.uint8)
    sizes = []

    def counting(frames):
        sizes.append(len(frames))
        return encode(frames)

    cache = TokenCache(counting)
    for picks in ([0, 1, 1, 2], [2, 3, 0, 0], [4, 4, 4, 4], [1, 2, 3, 4]):
        frames = screens[picks]
        np.testing.assert_array_equal(cache.tokens(frames), np.asarray(encode(frames)))
    assert sizes == [4, 1, 1]  # 3 new frames (padded to 4), then frame 3, then frame 4
    assert cache.take_counts() == (11, 5)  # 5 distinct frames encoded, 11 looked up
    assert cache.take_counts() == (0, 0) and cache.hit_rate == 0.0


def test_the_least_recently_used_frame_is_forgotten(encode):
    screens = np.random.default_rng(1).integers(0, 255, (3, 144, 160, 1), dtype=np.uint8)
    cache = TokenCache(encode, capacity=2)
    cache.tokens(screens[[0, 1]])
    cache.tokens(screens[[0]])  # 0 is now the most recent
    cache.tokens(screens[[2]])  # 1 goes
    assert len(cache.entries) == 2
    cache.take_counts()
    cache.tokens(screens[[0, 1]])
    assert cache.take_counts() == (1, 1)
