"""bench/saved_states.py's play: episodes from power-on or from saved states, with a given memory."""

import jax
import numpy as np
import pytest

from bench.saved_states import play
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.vec_gameboy import VecGameBoy

NOOP, A, START = 0, 5, 7
TITLE_STEPS = 4  # envs/roms/emuquest/intro.presses: START x4 leaves the title, then A pages the intro


class ScriptedAct:
    """Stands in for the policy: START on the title's steps, then A (or NOOP throughout); its memory
    is the number of frames it has read. Records what each call was given."""

    def __init__(self, button_after_title: int = A):
        self.button_after_title, self.calls = button_after_title, []

    def __call__(self, frames, first, memory, key):
        self.calls.append((np.array(first), np.array(memory)))
        button = (
            START
            if len(self.calls) <= TITLE_STEPS and self.button_after_title != NOOP
            else self.button_after_title
        )
        return np.full(len(frames), button), np.asarray(memory) + 1.0


@pytest.fixture(scope="module")
def env():
    with VecGameBoy(EMUQUEST_ROM, num_envs=2, backend="serial", max_steps=64, profile=EmuQuest()) as env:
        yield env


def test_power_on_play_records_the_memory_before_each_new_milestones_first_frame(env):
    act = ScriptedAct()
    start, best, left_room, first_memories = play(
        env, act, np.zeros((2, 3), np.float32), 30, key=jax.random.PRNGKey(0)
    )
    assert act.calls[0][0].all() and not act.calls[1][0].any()  # only the first frame starts an episode
    assert start.tolist() == [0, 0] and best.tolist() == [1, 1]  # the intro is done; nothing more
    assert not left_room.any()  # the title and the intro's house share one map id
    # Replay the same presses: the frame that first shows milestone 1 comes after step k, so the
    # memory before it has read k frames.
    env.reset(seed=0)
    for steps in range(1, 31):
        _, _, _, _, info = env.step(np.full(2, START if steps <= TITLE_STEPS else A))
        if info["milestones"][0] == 1:
            break
    assert [m.tolist() for m in first_memories[1]] == [[steps] * 3] * 2
    assert set(first_memories) == {1}


def test_play_from_saved_states_reads_their_frames_with_the_given_memory(env):
    env.reset(seed=0)
    for button in [START] * TITLE_STEPS + [A] * 20:
        env.step(np.full(2, button))
    after_intro = env.save_states([0])[0]
    memory = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    act = ScriptedAct(button_after_title=NOOP)
    start, best, left_room, first_memories = play(
        env, act, memory, 5, key=jax.random.PRNGKey(0), starts=[after_intro] * 2
    )
    first, given = act.calls[0]
    assert not first.any()  # a saved state's memory is carried in, not zeroed
    np.testing.assert_array_equal(given, memory)
    assert start.tolist() == [1, 1] and best.tolist() == [1, 1]
    assert not left_room.any() and first_memories == {}
