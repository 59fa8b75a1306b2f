"""Where each phase writes by default, the checkpoint names the phases pass between them, and how a
script finds a checkpoint given by name.

Every phase has its own folder under checkpoints/, so no phase overwrites another's metrics:

    checkpoints/pretrain/   pretrained_tokenizer.pkl, pretrained_encoder.pkl, pretrained_dynamics.pkl
    checkpoints/reward/     reward_resnet34.pkl, reward_vq.pkl
    checkpoints/ppo/        policy_<iteration>.pkl, policy_final.pkl
    checkpoints/eval/       the evaluation's tables and plot

A checkpoint flag takes a path or a bare name: `--tokenizer pretrained_tokenizer.pkl` and
`--resume checkpoints/policy_1000.pkl` find the file in the phase folder that holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from training.cli import fail

CHECKPOINTS = Path("checkpoints")
PRETRAIN_DIR = CHECKPOINTS / "pretrain"
REWARD_DIR = CHECKPOINTS / "reward"
PPO_DIR = CHECKPOINTS / "ppo"
EVAL_DIR = CHECKPOINTS / "eval"
LAM_DIR = CHECKPOINTS / "lam"
VIDEO_TOKENIZER_DIR = CHECKPOINTS / "video_tokenizer"
PHASE_DIRS = (PRETRAIN_DIR, REWARD_DIR, PPO_DIR, LAM_DIR, VIDEO_TOKENIZER_DIR)

TOKENIZER_FILE = "pretrained_tokenizer.pkl"  # Phase 1a: encoder + codebook + decoder
ENCODER_FILE = "pretrained_encoder.pkl"  # Phase 1a: encoder + codebook, what the policy and reward read
DYNAMICS_FILE = "pretrained_dynamics.pkl"  # Phase 1b
POLICY_FINAL_FILE = "policy_final.pkl"  # Phase 3
LAM_FILE = "lam.pkl"
VIDEO_TOKENIZER_FILE = "video_tokenizer.pkl"


def reward_file(backbone: str) -> str:
    """Phase 2's checkpoint name for a backbone ("resnet34" or "vq")."""
    return f"reward_{backbone}.pkl"


def find_checkpoint(path: str | Path, flag: str, *folders: str | Path) -> Path:
    """The checkpoint file `path` names: `path` itself if it exists, else the same relative path in each
    of `folders`, else (a bare name, or one directly under checkpoints/) the one phase folder under
    checkpoints/ that holds a file of that name. Exits with one line naming `flag` when there is none,
    or more than one."""
    path = Path(path)
    if path.is_file():
        return path
    looked = [path]
    for folder in folders:
        candidate = Path(folder) / path
        looked.append(candidate)
        if candidate.is_file():
            return candidate
    if path.parent in (Path("."), CHECKPOINTS):
        found = [folder / path.name for folder in PHASE_DIRS if (folder / path.name).is_file()]
        if len(found) == 1:
            return found[0]
        if found:
            raise fail(f"{flag}: {path.name} is in {' and '.join(map(str, found))}; give the path")
        looked += [folder / path.name for folder in PHASE_DIRS]
    raise fail(f"{flag}: no checkpoint {path} (looked in {', '.join(dict.fromkeys(str(p) for p in looked))})")


def path_for_checkpoint(path: str | Path, checkpoint_dir: str | Path) -> str:
    """`path` as a checkpoint in `checkpoint_dir` stores it: relative to that folder, so the run works
    from any working directory and moves with its inputs."""
    return os.path.relpath(Path(path).resolve(), Path(checkpoint_dir).resolve())


def path_from_checkpoint(stored: str | Path, checkpoint_dir: str | Path) -> Path:
    """A path stored in a checkpoint in `checkpoint_dir`, resolved against that folder. A relative path
    that is missing there but exists from the working directory is taken from there: checkpoints written
    before paths were stored relative to them hold paths relative to the working directory."""
    stored = Path(stored)
    if stored.is_absolute():
        return stored
    beside = Path(checkpoint_dir) / stored
    return stored if not beside.exists() and stored.exists() else beside
