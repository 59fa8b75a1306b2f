"""bench/wander_reward.py: revisited screens, the house's rise and what leaving adds, from scores and RAM."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.wander_reward import Args, house_and_leaving, play, revisits, scores_along
from training.route import Route

REPO = Path(__file__).resolve().parents[1]


def test_house_rise_and_leaving_read_milestones_not_scores():
    # Columns are episodes. 0: the house from step 1 (scores 1, 3, 2: rise 2), town at step 4 (4: adds 1).
    # 1: the house from step 2 (2, 6, 1, 1: rise 4), never leaves. 2: never finishes the intro.
    milestones = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [2, 1, 0], [2, 1, 0]])
    scores = np.array([[5, 0, 9], [1, 0, 9], [3, 2, 9], [2, 6, 9], [4, 1, 9], [9, 1, 9]], float)
    assert house_and_leaving(scores, milestones) == {"in_house": 2, "left": 1, "rise": 3.0, "leaving": 1.0}


def test_revisits_compare_a_screens_last_showing_with_its_first():
    # Episode 0 shows screen 7 at steps 0, 2, 3 (scores 1, 5, 4: +3, 3 steps apart) and screen 8 once;
    # episode 1 shows screen 7 at steps 1, 3 (2, 2: +0, 2 steps apart); -1 is not a house screen.
    screens = np.array([[7, -1], [8, 7], [7, -1], [7, 7]])
    scores = np.array([[1, 0], [9, 2], [5, 9], [4, 2]], float)
    assert revisits(scores, screens) == {"screens": 2, "drift": 1.5, "steps_apart": 2.5}
    assert revisits(scores, np.full_like(screens, -1))["screens"] == 0


class CountSeen:
    """A stand-in seen-token model: token = the frame's first pixel; score = tokens in the bag."""

    bag_size = 4

    def tokens(self, frames):
        return frames[:, :1, :1, 0].astype(np.int64)

    def score_tokens(self, tokens, bags):
        return bags.sum(1).astype(np.float32)


def test_bags_hold_every_frame_of_the_episode_so_far_including_the_current_one():
    reset = np.zeros((2, 1, 1, 1), np.uint8)
    reset[:, 0, 0, 0] = [1, 0]  # the reset frames show tokens already seen again below
    frames = np.zeros((4, 2, 1, 1, 1), np.uint8)
    frames[:, 0, 0, 0, 0] = [1, 1, 2, 3]  # episode 0 sees tokens 1, 1, 2, 3
    frames[:, 1, 0, 0, 0] = [0, 0, 0, 0]
    assert scores_along(CountSeen(), reset, frames).tolist() == [[1, 1], [1, 1], [2, 1], [3, 1]]
    reset[1, 0, 0, 0] = 3  # a token seen only at episode 1's reset stays in its bag
    assert scores_along(CountSeen(), reset, frames).tolist() == [[1, 2], [1, 2], [2, 2], [3, 2]]


class TwoTokens:
    """A stand-in VQ reward whose token grid is the frame's first pixel twice (2 tokens differ between
    two frames, more than the route's tolerance of 1)."""

    bag_size = 0

    def tokens(self, frames):
        return np.repeat(frames[:, :1, :1, 0].astype(np.int64), 2, axis=2)


def test_along_a_route_a_screen_shown_again_scores_the_same():
    """Scored along a run whose frame i shows token i (score 10 i), an episode walking 1, 2, 1, 2 gains
    twice and then nothing, and one that looks at 35, beyond the 30-frame window, gets nothing for it."""
    grids = np.repeat(np.arange(40, dtype=np.int32)[:, None], 2, axis=1)
    route = Route(grids, 10 * np.arange(40, dtype=np.float32))
    reset = np.zeros((2, 1, 1, 1), np.uint8)
    frames = np.zeros((4, 2, 1, 1, 1), np.uint8)
    frames[:, 0, 0, 0, 0] = [1, 2, 1, 2]
    frames[:, 1, 0, 0, 0] = [1, 35, 35, 2]
    scores = scores_along(TwoTokens(), reset, frames, [route])
    assert scores.T.tolist() == [[10, 20, 20, 20], [10, 10, 10, 20]]


@pytest.mark.parametrize("problem", ["missing", "not a reward"])
def test_a_bad_reward_checkpoint_fails_in_one_line_before_any_play(tmp_path, problem):
    path = tmp_path / "reward.pkl"
    if problem == "not a reward":
        path.write_bytes(b"not a pickle")
    result = subprocess.run(
        [sys.executable, "bench/wander_reward.py", "--rewards", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith("--rewards:") and "random play" not in result.stderr
    )


def test_play_records_frames_milestones_and_no_house_screen_before_the_intro_ends():
    reset_frames, frames, milestones, screens = play(Args(episodes=2, steps=4, num_workers=1))
    assert reset_frames.shape == (2, 144, 160, 3) and reset_frames.dtype == np.uint8
    assert frames.shape == (4, 2, 144, 160, 3) and frames.dtype == np.uint8 and frames.any()
    assert milestones.shape == screens.shape == (4, 2)
    assert (milestones == 0).all() and (screens == -1).all()  # 4 random steps cannot finish the intro
