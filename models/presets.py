"""Size presets of the models a script can train: "seed" is the compact seed config (~7M
parameters per model), "small" fits a 2-core CPU, "tiny" is for tests."""

from __future__ import annotations

from models.resnet import ResNetConfig

# The tokenizer and the dynamics model. On "small" the convolutions at the highest resolutions cost
# the most, so they get the fewest channels, and there are no residual blocks.
PHASE1_SIZES = {
    "tiny": dict(
        embed_dim=16, encoder_channels=(8, 8, 16, 16), res_blocks=0, vocab_size=64, num_layers=1, num_heads=2
    ),
    "small": dict(
        embed_dim=64,
        encoder_channels=(8, 16, 32, 64),
        res_blocks=0,
        vocab_size=512,
        num_layers=2,
        num_heads=4,
    ),
    "seed": dict(
        embed_dim=192,
        encoder_channels=(32, 64, 128, 192),
        res_blocks=1,
        vocab_size=512,
        num_layers=4,
        num_heads=4,
    ),
}

# Peak learning rates of the Phase 1 models per preset: "small" trains both stages well at 1e-3
# (bench/phase12.py; the main job tunes each stage), "seed" stably at 3e-4 (bench/tokenizer_stability.py).
PHASE1_LR = {"tiny": 3e-4, "small": 1e-3, "seed": 3e-4}

# The reward's ResNet: "seed" is the real ResNet-34, "small" keeps its depth at 1/4 width.
RESNET_SIZES = {
    "tiny": ResNetConfig(stage_sizes=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8, norm_groups=4),
    "small": ResNetConfig(widths=(16, 32, 64, 128), stem_width=16, norm_groups=8),
    "seed": ResNetConfig(),
}
