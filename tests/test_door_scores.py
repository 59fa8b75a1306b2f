"""bench/door_scores.py: what each room entry of a policy's episodes scores against the best before it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.door_scores import room_entries

REPO = Path(__file__).resolve().parents[1]


def test_room_entries_compare_each_visit_with_the_episodes_best_before_the_door():
    # Episode 0: map 1 (best 5), map 2 from step 3 (scores 2, 6, milestone 3 -> 4 at step 4), back to
    # map 1 at step 5 (7, 7). Episode 1: map 1 then map 2 from step 2 (1, 1, 1, 1), never back.
    scores = np.array([[1, 0], [5, 3], [3, 1], [2, 1], [6, 1], [7, 1], [7, 1]], float)
    maps = np.array([[1, 1], [1, 1], [1, 2], [2, 2], [2, 2], [1, 2], [1, 2]])
    milestones = np.array([[3, 3], [3, 3], [3, 3], [3, 3], [4, 3], [4, 3], [4, 3]])
    entries = room_entries(scores, maps, milestones)
    assert set(entries) == {(1, 2, 3), (2, 1, 4)}
    into = entries[(1, 2, 3)]
    # Episode 0: entry 2 - 5, visit 6 - 5, 2 steps, reached milestone 4. Episode 1: 1 - 3, 1 - 3, 5 steps.
    assert into["entries"] == 2 and into["new milestone"] == 1
    assert into["entry"] == pytest.approx(-2.5) and into["visit"] == pytest.approx(-0.5)
    assert into["steps"] == pytest.approx(3.5)
    back = entries[(2, 1, 4)]
    assert (back["entries"], back["entry"], back["visit"], back["steps"]) == (1, 1.0, 1.0, 2.0)


def test_no_room_change_means_no_entries():
    flat = np.zeros((5, 3))
    assert room_entries(flat, flat.astype(int), flat.astype(int)) == {}


@pytest.mark.parametrize("bench", ["bench/door_scores.py", "bench/saved_states.py"])
def test_a_missing_policy_fails_in_one_line_before_any_play(tmp_path, bench):
    """Both benches that play a trained policy."""
    result = subprocess.run(
        [sys.executable, bench, "--policy", str(tmp_path / "policy.pkl")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"--policy: {tmp_path / 'policy.pkl'}: no such checkpoint file"
    )
