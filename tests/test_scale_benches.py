"""The GPU bench runs end to end at tiny sizes on the CPU and writes its table."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench(script: str, tmp_path: Path, flags: str) -> str:
    """The bench's table, after running it with `flags` (space-separated) in `tmp_path`."""
    output = tmp_path / f"{script}.md"
    command = [
        sys.executable,
        f"bench/{script}",
        *flags.split(),
        "--output",
        str(output),
        "--scratch",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return output.read_text()


def test_the_gpu_bench_runs_at_tiny_size_on_the_cpu(tmp_path):
    table = bench("gpu.py", tmp_path, "--size tiny --steps 2 --ppo-iterations 2 --env-steps 5 --envs 4")
    assert "devices: cpu" in table and "--size tiny" in table
    for row in (
        "| tokenizer training (0.03M params), frames/s |",
        "| dynamics training",
        "| PPO iterations per hour",
        "| 4 | raw PyBoy |",
        "| 4 | VecGameBoy |",
    ):
        assert row in table
    assert not list(tmp_path.glob("gpu_bench_*"))
