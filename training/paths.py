"""Checkpoint file names the phases pass between them, and how a script finds one by name."""

from __future__ import annotations

from pathlib import Path

TOKENIZER_FILE = "pretrained_tokenizer.pkl"  # Phase 1a: encoder + codebook + decoder
ENCODER_FILE = "pretrained_encoder.pkl"  # Phase 1a: encoder + codebook, what the policy and reward read
DYNAMICS_FILE = "pretrained_dynamics.pkl"  # Phase 1b
POLICY_FINAL_FILE = "policy_final.pkl"  # Phase 3
LAM_FILE = "lam.pkl"
VIDEO_TOKENIZER_FILE = "video_tokenizer.pkl"


def reward_file(backbone: str) -> str:
    """Phase 2's checkpoint name for a backbone ("resnet34" or "vq")."""
    return f"reward_{backbone}.pkl"


def find_checkpoint(path: str | Path, folder: str | Path) -> Path:
    """`path` as given if that file exists, else `folder / path` when that one does (a bare name such
    as pretrained_tokenizer.pkl finds the file in the output folder), else `path` unchanged, for the
    loader to report as missing."""
    path = Path(path)
    if not path.is_file() and (Path(folder) / path).is_file():
        return Path(folder) / path
    return path
