"""bench/agent.py refuses a bad --resume-from before any seed trains (a full run takes an hour)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_FILES = ("pretrained_encoder.pkl", "pretrained_dynamics.pkl", "reward_vq.pkl")


@pytest.mark.parametrize("case", ["missing run", "same as out dir"])
def test_agent_bench_refuses_a_bad_resume_from(tmp_path: Path, case: str):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in CHECKPOINT_FILES:  # only their presence is checked before --resume-from
        (checkpoints / name).touch()
    earlier = tmp_path / "earlier"
    (earlier / "seed_0" / "ppo").mkdir(parents=True)
    (earlier / "seed_0" / "ppo" / "policy_final.pkl").write_bytes(b"kept")
    out_dir = earlier if case == "same as out dir" else tmp_path / "out"
    command = [
        sys.executable,
        "bench/agent.py",
        "--checkpoints",
        str(checkpoints),
        "--seeds",
        "0",
        "1",
        "--resume-from",
        str(earlier),
        "--out-dir",
        str(out_dir),
        "--output",
        str(tmp_path / "agent.md"),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    expected = (
        "seed_1/ppo/policy_final.pkl not found" if case == "missing run" else "--resume-from is --out-dir"
    )
    assert expected in result.stderr
    assert (earlier / "seed_0" / "ppo" / "policy_final.pkl").read_bytes() == b"kept"
    assert not (tmp_path / "agent.md").exists()
