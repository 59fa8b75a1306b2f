"""The bag of seen tokens (training/ranking.py's seen_token_bags, read by bench/history_reward.py): what each
run and branch frame has seen so far."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench import history_reward
from training.ranking import seen_token_bags

REPO = Path(__file__).resolve().parents[1]


class Sized(SimpleNamespace):
    """Stands in for a FramesDataset or Branches: their arrays and length."""

    def __len__(self):
        return len(self.run_id)

    def run_indices(self, run):
        return np.flatnonzero(self.run_id == run)


def test_bags_accumulate_along_runs_and_branches_start_from_the_run_at_their_start():
    # Run 0 shows tokens {0}, {1}, {2} (dataset indices 0, 1, 3); run 1 shows {5}. A branch left
    # run 0 after its second frame and showed {3}, then {4}; another left at its first frame and showed {5}.
    data = Sized(run_id=np.array([0, 0, 1, 0]), frame_index=np.array([0, 1, 0, 2]), num_runs=2)
    branches = Sized(run_id=np.zeros(3), start=np.array([1, 1, 0]), step=np.array([1, 2, 1]))
    tokens = np.array([0, 1, 5, 2, 3, 4, 5])[:, None, None] * np.ones((1, 2, 2), int)  # (N, rows, cols)

    bags = seen_token_bags(tokens, data, branches, vocab_size=6)
    assert bags.dtype == np.uint8 and bags.shape == (7, 6)
    seen = [set(np.flatnonzero(bag)) for bag in bags]
    assert seen == [{0}, {0, 1}, {5}, {0, 1, 2}, {0, 1, 3}, {0, 1, 3, 4}, {0, 5}]
    assert [set(np.flatnonzero(bag)) for bag in seen_token_bags(tokens[:4], data, None, 6)] == seen[:4]


def test_what_bags_record_counts_codes_every_training_run_shows_and_codes_new_at_the_text():
    # Training run 0 shows {0, 1}, {1, 2}; held-out run 1 shows {0, 3}, {3, 4}, then the text {4, 5}.
    data = Sized(run_id=np.array([0, 0, 1, 1, 1]), frame_index=np.array([0, 1, 0, 1, 2]), num_runs=2)
    tokens = np.array([[0, 1], [1, 2], [0, 3], [3, 4], [4, 5]])[:, None, :]  # (N, rows, cols)
    groups = {"text": np.array([4])}
    assert history_reward.what_bags_record(tokens, data, groups, holdout=1, vocab_size=6) == (3, 1)


def test_missing_speedruns_fail_in_one_line(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "bench/history_reward.py", "--speedruns", str(tmp_path / "none")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr and "pipeline.py" in result.stderr
