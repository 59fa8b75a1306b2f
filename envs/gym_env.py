"""One Game Boy as a gymnasium.Env, for RL libraries that build their own vector envs.

    import gymnasium
    import envs.gym_env  # registers EmuRL/GameBoy-v0

    env = gymnasium.make("EmuRL/GameBoy-v0")                           # EmuQuest
    envs = gymnasium.make_vec("EmuRL/GameBoy-v0", num_envs=4, rom="PokemonRed.gb")

Training in this project uses VecGameBoy (worker processes, shared memory, same-step autoreset);
this wraps a one-env serial VecGameBoy, so both step the same emulator code.
"""

from __future__ import annotations

import gymnasium
import numpy as np

from envs.games import EMUQUEST_ROM
from envs.vec_gameboy import VecGameBoy

ENV_ID = "EmuRL/GameBoy-v0"


class GameBoyEnv(gymnasium.Env):
    """uint8 (144, 160, 3) frames in, a discrete button out; the reward is new RAM milestones (0 for a
    game without a profile). An episode ends at the game's end (terminated) or after `max_steps`
    (truncated); VecGameBoy keyword arguments (frame_skip, initial_state, ...) pass through."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, rom=EMUQUEST_ROM, render_mode: str | None = None, **vec_kwargs):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._vec = VecGameBoy(rom, num_envs=1, backend="serial", **vec_kwargs)
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self._frame = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self._vec.reset(seed=int(self.np_random.integers(2**31)))
        self._frame = obs[0].copy()
        return self._frame.copy(), self._info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self._vec.step(np.asarray([action]))
        # VecGameBoy restarted the episode already; the Gymnasium caller sees its last frame and resets.
        self._frame = info["final_obs"][0] if terminated[0] or truncated[0] else obs[0].copy()
        return self._frame.copy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), self._info(info)

    def render(self):
        return None if self._frame is None else self._frame.copy()

    def close(self):
        self._vec.close()

    @staticmethod
    def _info(info: dict) -> dict:
        """The one env's progress facts (and its episode's stats when it ended)."""
        single = {"milestones": int(info["milestones"][0]), "map_id": int(info["map_id"][0])}
        if info.get("episodes"):
            single["episode"] = info["episodes"][0]
        return single


if ENV_ID not in gymnasium.registry:
    gymnasium.register(ENV_ID, entry_point=GameBoyEnv)
