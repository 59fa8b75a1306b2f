"""One Game Boy as a gymnasium.Env: Gymnasium's own checker, and its vector envs built from it."""

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env

import envs.gym_env  # noqa: F401  (registers EmuRL/GameBoy-v0)

SMALL = dict(max_steps=4, frame_skip=8, press_frames=4)


def test_gymnasiums_checker_passes():
    env = gymnasium.make("EmuRL/GameBoy-v0", **SMALL)
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


def test_an_episode_ends_on_its_last_frame_and_reset_starts_again():
    env = gymnasium.make("EmuRL/GameBoy-v0", **SMALL)
    first, _ = env.reset(seed=0)
    for t in range(4):
        obs, reward, terminated, truncated, info = env.step(7 if t == 0 else 5)  # START, then A
    assert truncated and not terminated and info["episode"]["length"] == 4
    assert not np.array_equal(obs, first)  # the episode's last frame, not the next one's first
    again, _ = env.reset(seed=0)
    np.testing.assert_array_equal(again, first)
    env.close()


def test_gymnasium_vectorizes_it():
    envs = gymnasium.make_vec("EmuRL/GameBoy-v0", num_envs=2, vectorization_mode="sync", **SMALL)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 144, 160, 3) and obs.dtype == np.uint8
    for _ in range(4):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert truncated.all() and info["_episode"].all()
    envs.close()
