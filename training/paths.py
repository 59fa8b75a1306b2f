"""Where each phase writes by default, the checkpoint names the phases pass between them, and how a
script finds a checkpoint given by name.

Every phase has its own folder under checkpoints/, so no phase overwrites another's metrics:

    checkpoints/pretrain/   pretrained_tokenizer.pkl, pretrained_encoder.pkl, pretrained_dynamics.pkl
    checkpoints/reward/     reward_resnet34.pkl, reward_vq.pkl
    checkpoints/ppo/        policy_<iteration>.pkl, policy_final.pkl
    checkpoints/eval/       the evaluation's tables and plot
    checkpoints/world_model/  world_model.pkl and its held-out report

A checkpoint flag takes a path or a bare name: `--tokenizer pretrained_tokenizer.pkl` and
`--resume checkpoints/policy_1000.pkl` find the file in the phase folder that holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from data import storage
from training.cli import fail, one_line_errors

CHECKPOINTS = Path("checkpoints")
PRETRAIN_DIR = CHECKPOINTS / "pretrain"
REWARD_DIR = CHECKPOINTS / "reward"
PPO_DIR = CHECKPOINTS / "ppo"
EVAL_DIR = CHECKPOINTS / "eval"
LAM_DIR = CHECKPOINTS / "lam"
VIDEO_TOKENIZER_DIR = CHECKPOINTS / "video_tokenizer"
WORLD_MODEL_DIR = CHECKPOINTS / "world_model"
PHASE_DIRS = (PRETRAIN_DIR, REWARD_DIR, PPO_DIR, LAM_DIR, VIDEO_TOKENIZER_DIR, WORLD_MODEL_DIR)

TOKENIZER_FILE = "pretrained_tokenizer.pkl"  # Phase 1a: encoder + codebook + decoder
ENCODER_FILE = "pretrained_encoder.pkl"  # Phase 1a: encoder + codebook, what the policy and reward read
DYNAMICS_FILE = "pretrained_dynamics.pkl"  # Phase 1b
POLICY_FINAL_FILE = "policy_final.pkl"  # Phase 3
LAM_FILE = "lam.pkl"
VIDEO_TOKENIZER_FILE = "video_tokenizer.pkl"
WORLD_MODEL_FILE = "world_model.pkl"


def reward_file(backbone: str) -> str:
    """Phase 2's checkpoint name for a backbone ("resnet34" or "vq")."""
    return f"reward_{backbone}.pkl"


def locate_checkpoint(path: str | Path, flag: str, *folders: str | Path) -> str | Path:
    """Where the checkpoint `path` names is: `path` itself if it exists (a file or a storage URL), else
    the same relative path in each of `folders` (folders or URLs), else (a bare name, or one directly
    under checkpoints/) the one phase folder under checkpoints/ that holds a file of that name. Exits with
    one line naming `flag` when there is none, or more than one."""
    if storage.is_url(path):
        return str(path)
    path = Path(path)
    if path.is_file():
        return path
    looked = [str(path)]
    for folder in folders:
        if storage.is_url(folder):
            candidate = storage.join(folder, *path.parts)
            looked.append(candidate)
            if _exists(candidate, flag):
                return candidate
            continue
        candidate = Path(folder) / path
        looked.append(str(candidate))
        if candidate.is_file():
            return candidate
    if path.parent in (Path("."), CHECKPOINTS):
        found = [folder / path.name for folder in PHASE_DIRS if (folder / path.name).is_file()]
        if len(found) == 1:
            return found[0]
        if found:
            raise fail(f"{flag}: {path.name} is in {' and '.join(map(str, found))}; give the path")
        looked += [str(folder / path.name) for folder in PHASE_DIRS]
    raise fail(f"{flag}: no checkpoint {path} (looked in {', '.join(dict.fromkeys(looked))})")


def _exists(url: str, flag: str) -> bool:
    with one_line_errors(f"{flag} {url}: cannot read it"):
        return storage.exists(url)


def local_checkpoint(location: str | Path, flag: str) -> Path:
    """The local file of a checkpoint `locate_checkpoint` found: a URL is downloaded into the read cache."""
    with one_line_errors(f"{flag} {location}: cannot read it"):
        return storage.local_copy(location)


def find_checkpoint(path: str | Path, flag: str, *folders: str | Path) -> Path:
    """The local file of the checkpoint `path` names (see `locate_checkpoint`)."""
    return local_checkpoint(locate_checkpoint(path, flag, *folders), flag)


def checkpoint_folder(location: str | Path) -> str | Path:
    """The folder (or URL prefix) a checkpoint found by `locate_checkpoint` lives in."""
    return str(location).rsplit("/", 1)[0] if storage.is_url(location) else Path(location).parent


def path_for_checkpoint(path: str | Path, checkpoint_dir: str | Path) -> str:
    """`path` as a checkpoint in `checkpoint_dir` stores it: relative to that folder, so the run works
    from any working directory and moves with its inputs. A URL is stored as it is, and so is a local
    file (as an absolute path) when the checkpoint goes to a URL."""
    if storage.is_url(path):
        return str(path)
    if storage.is_url(checkpoint_dir):
        return str(Path(path).resolve())
    return os.path.relpath(Path(path).resolve(), Path(checkpoint_dir).resolve())


def path_from_checkpoint(stored: str | Path, checkpoint_dir: str | Path) -> str | Path:
    """A path stored in a checkpoint in `checkpoint_dir`, resolved against that folder (a URL stays as it
    is). A relative path that is missing there but exists from the working directory is taken from there:
    checkpoints written before paths were stored relative to them hold paths relative to the working
    directory."""
    if storage.is_url(stored):
        return str(stored)
    stored = Path(stored)
    if stored.is_absolute():
        return stored
    if storage.is_url(checkpoint_dir):
        return storage.join(checkpoint_dir, *stored.parts)
    beside = Path(checkpoint_dir) / stored
    return stored if not beside.exists() and stored.exists() else beside
