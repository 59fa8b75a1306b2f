"""bench/history_reward.py's bag of seen tokens: what each run and branch frame has seen so far."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.history_reward import seen_token_bags

REPO = Path(__file__).resolve().parents[1]


def test_bags_accumulate_along_runs_and_branches_start_from_the_run_at_their_start(tmp_path: Path):
    # One run of three frames (emulator frames 0, 4, 8) showing tokens {0}, {1}, {2}; a branch that
    # left at emulator frame 5 (after the run's frame 4) and showed {3}, then {4}.
    frames = [{"frame": f} for f in (0, 4, 8)]
    branches = [{"start_frame": 5, "step": 1}, {"start_frame": 5, "step": 2}]
    for sub, key, records in (("frames", "frames", frames), ("branches", "branches", branches)):
        (tmp_path / sub / "run_00").mkdir(parents=True)
        (tmp_path / sub / "run_00" / "metadata.json").write_text(json.dumps({key: records}))
    class Dataset(SimpleNamespace):  # what seen_token_bags reads of a FramesDataset
        def __len__(self):
            return len(self.run_id)

    data = Dataset(run_names=["run_00"], run_id=np.zeros(3, int), frame_index=np.arange(3))
    tokens = np.array([0, 1, 2, 3, 4])[:, None, None] * np.ones((1, 2, 2), int)  # (N, rows, cols)

    bags = seen_token_bags(tokens, data, tmp_path, vocab=6)
    seen = [set(np.flatnonzero(bag)) for bag in bags]
    assert seen == [{0}, {0, 1}, {0, 1, 2}, {0, 1, 3}, {0, 1, 3, 4}]


def test_missing_speedruns_fail_in_one_line(tmp_path: Path):
    result = subprocess.run([sys.executable, "bench/history_reward.py", "--speedruns", str(tmp_path / "none")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr and "pipeline.py" in result.stderr
