"""The seed's commands, as the README lists them, run from the README's folder layout: each command
line is parsed by its script's own CLI with only size flags added. Budgets (--iterations 12000, the
resume's policy_1000.pkl, --epochs 100, --steps 2000) are shrunk to what a test can run, by a later flag
that overrides the written one; every checkpoint name is found where the phase before wrote it."""

import shlex
import sys
from pathlib import Path

import pytest
import tyro

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import evaluate_policy  # noqa: E402
import pretrain_visual  # noqa: E402
import train_reward  # noqa: E402
import train_with_cnn_reward  # noqa: E402
from data.make_speedruns import Args as SpeedrunArgs  # noqa: E402
from data.make_speedruns import main as make_speedruns  # noqa: E402
from models.checkpoint import load_checkpoint  # noqa: E402

SCRIPTS = {
    "pretrain_visual.py": pretrain_visual,
    "train_reward.py": train_reward,
    "train_with_cnn_reward.py": train_with_cnn_reward,
    "evaluate_policy.py": evaluate_policy,
}
PPO_SIZE = "--num-envs 2 --num-steps 8 --num-minibatches 2 --num-workers 0"

# (the seed's command, the flags added to make it tiny)
COMMANDS = [
    ("pretrain_visual.py --data data/speedruns/frames --epochs 100", "--size tiny --epochs 4"),
    ("pretrain_visual.py --stage 1b --tokenizer pretrained_tokenizer.pkl", "--size tiny"),
    ("train_reward.py --data data/speedruns/frames --tokenizer pretrained_tokenizer.pkl --epochs 50", ""),
    ("train_reward.py --backbone resnet34", "--size tiny"),
    (
        "train_with_cnn_reward.py --reward-model reward_resnet34.pkl "
        "--pretrained-tokenizer pretrained_tokenizer.pkl --pretrained-dynamics pretrained_dynamics.pkl "
        "--return-filter 0.8 --iterations 2 --save-every 1",
        PPO_SIZE,
    ),
    ("train_with_cnn_reward.py --resume checkpoints/policy_1.pkl --iterations 3", "--num-workers 0"),
    (
        "evaluate_policy.py --policy checkpoints/policy_final.pkl --steps 2000",
        "--episodes 2 --num-workers 0 --steps 300",
    ),
]


@pytest.fixture(scope="module")
def seed_layout(tmp_path_factory):
    """A folder laid out as the README says: data/speedruns/frames, then checkpoints/ as the phases
    write it."""
    root = tmp_path_factory.mktemp("seed_layout")
    make_speedruns(SpeedrunArgs(num_runs=2, frame_every=32, out=root / "data" / "speedruns"))
    return root


def run(command: str, size: str):
    script, *flags = shlex.split(command) + shlex.split(size)
    module = SCRIPTS[script]
    return module.main(tyro.cli(module.Args, args=flags))


def test_the_seed_commands_run_as_written(seed_layout, monkeypatch):
    monkeypatch.chdir(seed_layout)
    results = [run(command, size) for command, size in COMMANDS]
    checkpoints = seed_layout / "checkpoints"
    assert results[2]["backbone"] == "vq" and (checkpoints / "reward" / "reward_vq.pkl").is_file()
    assert (checkpoints / "reward" / "reward_resnet34.pkl").is_file()
    resumed = load_checkpoint(checkpoints / "ppo" / "policy_final.pkl", "policy")
    assert resumed["step"] == 3 and resumed["config"]["args"]["return_filter"] == 0.8  # restored on resume
    assert [row["agent"] for row in results[-1]["rows"]] == ["trained"]
    # No phase removed another's metrics: each has its own folder.
    for phase in ("pretrain", "reward", "ppo"):
        assert (checkpoints / phase / "metrics.jsonl").stat().st_size > 0, phase
