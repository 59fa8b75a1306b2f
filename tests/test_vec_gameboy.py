"""VecGameBoy on the embedded game: backends agree, states round-trip, episodes reset,
errors are loud. Small env counts and few steps keep the whole file to seconds."""

import functools
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from envs.actions import ACTION_NAMES
from envs.curriculum import CurriculumPool
from envs.emulators import WorkerError
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.rom import RomError
from envs.vec_gameboy import VecGameBoy

NOOP, UP, DOWN, LEFT, RIGHT, A, B, START = range(8)
WALK = [DOWN, DOWN, LEFT, LEFT, UP, UP, RIGHT, RIGHT]  # a square in the first room


@functools.cache
def intro_script() -> tuple[int, list[int]]:
    """(steps spent on the title, actions) from power-on: START until the title is left,
    then A until the intro is done (the first milestone). Found by playing, so the tests
    follow the game if its title or intro change length."""
    actions = []
    with VecGameBoy(EMUQUEST_ROM, num_envs=1, backend="serial") as env:
        env.reset(seed=0)
        while env.ram([EmuQuest.MODE])[0, 0] == EmuQuest.MODE_TITLE:
            assert len(actions) < 30, "START does not leave the EmuQuest title screen"
            actions.append(START)
            env.step([START])
        title_steps = len(actions)
        milestones = 0
        while milestones == 0:
            assert len(actions) < 100, "A does not finish the EmuQuest intro"
            actions.append(A)
            milestones = env.step([A])[4]["milestones"][0]
    return title_steps, actions


def scripted_actions(num_steps: int, num_envs: int, seed: int) -> np.ndarray:
    """int (num_steps, num_envs): env 0 plays the intro then WALK, the others act at random."""
    actions = np.random.default_rng(seed).integers(0, 8, size=(num_steps, num_envs))
    actions[:, 0] = (intro_script()[1] + WALK * num_steps)[:num_steps]
    return actions


def rollout(env: VecGameBoy, actions: np.ndarray) -> list[tuple]:
    """Step through actions; copy everything, since obs is overwritten in place."""
    out = []
    for row in actions:
        obs, reward, terminated, truncated, info = env.step(row)
        out.append((obs.copy(), reward, terminated, truncated, info))
    return out


def test_action_set_is_noop_dpad_a_b_start():
    assert ACTION_NAMES[:8] == ("noop", "up", "down", "left", "right", "a", "b", "start")


def test_serial_and_process_backends_give_identical_observations():
    # A curriculum pool with p = 0.5 and short episodes makes the seed matter: which
    # resets load a pool state is drawn from it, in the parent, for both backends.
    title_steps, intro = intro_script()
    with VecGameBoy(EMUQUEST_ROM, num_envs=1, backend="serial", max_steps=1000) as source:
        source.reset(seed=0)
        pool = CurriculumPool(capacity=4)
        for step, action in enumerate(intro + WALK):
            source.step([action])
            if step in (title_steps, len(intro) + 3):  # in the intro dialogue; walking in the house
                pool.add(source.save_states([0])[0], score=step)

    actions = scripted_actions(num_steps=24, num_envs=3, seed=1)
    runs = {}
    for backend in ("serial", "process"):
        with VecGameBoy(
            EMUQUEST_ROM,
            num_envs=3,
            num_workers=2,
            backend=backend,
            max_steps=8,
            curriculum=pool,
            pool_prob=0.5,
        ) as env:
            first_obs, _ = env.reset(seed=7)
            runs[backend] = [(first_obs.copy(),)] + rollout(env, actions)

    for serial_step, process_step in zip(runs["serial"], runs["process"], strict=True):
        np.testing.assert_array_equal(serial_step[0], process_step[0])
        if len(serial_step) > 1:
            for a, b in zip(serial_step[1:4], process_step[1:4]):
                np.testing.assert_array_equal(a, b)
            assert serial_step[4]["episodes"] == process_step[4]["episodes"]
            np.testing.assert_array_equal(serial_step[4]["milestones"], process_step[4]["milestones"])
    # Both kinds of reset happened: power-on shows a blank (one-colour) screen, pool states do not.
    reset_frames = [runs["serial"][0][0]] + [step[0] for step in runs["serial"][8::8]]
    from_pool = [frame.min() != frame.max() for frames in reset_frames for frame in frames]
    assert any(from_pool) and not all(from_pool)


def test_save_step_load_step_round_trip_gives_identical_frames():
    intro_steps = len(intro_script()[1])
    actions = scripted_actions(num_steps=intro_steps + 10, num_envs=2, seed=2)
    with VecGameBoy(EMUQUEST_ROM, num_envs=2, num_workers=2, max_steps=1000) as env:
        env.reset(seed=0)
        rollout(env, actions[:intro_steps])
        states = env.save_states([0, 1])
        saved_obs = env.step(np.zeros(2, int))[0].copy()  # the frame after one idle step
        first = rollout(env, actions[intro_steps:])
        env.load_states([0, 1], states)
        np.testing.assert_array_equal(env.step(np.zeros(2, int))[0], saved_obs)
        second = rollout(env, actions[intro_steps:])
    frames_first = np.stack([step[0] for step in first])
    frames_second = np.stack([step[0] for step in second])
    assert len({frame.tobytes() for frame in frames_first[:, 0]}) > 3  # the player really moved
    np.testing.assert_array_equal(frames_first, frames_second)


def test_loaded_state_shows_its_frame_and_initial_state_starts_episodes(tmp_path: Path):
    with VecGameBoy(EMUQUEST_ROM, num_envs=1, backend="serial") as env:
        env.reset(seed=0)
        saved_frame = rollout(env, np.array([intro_script()[1]]).T)[-1][0][0]
        state = env.save_states([0])[0]
        next_frame = env.step([NOOP])[0][0].copy()
        env.load_states([0], [state])
        np.testing.assert_array_equal(env.step([NOOP])[0][0], next_frame)

    state_file = tmp_path / "after_intro.state"
    state_file.write_bytes(state)
    for initial_state in (state, state_file):
        with VecGameBoy(
            EMUQUEST_ROM, num_envs=2, backend="serial", initial_state=initial_state, max_steps=1
        ) as env:
            np.testing.assert_array_equal(env.reset(seed=0)[0], np.stack([saved_frame] * 2))
            obs, _, _, truncated, info = env.step([NOOP, NOOP])
            assert truncated.all() and [e["milestones"] for e in info["episodes"]] == [1, 1]
            # Auto-reset went back to the initial state, not to power-on.
            np.testing.assert_array_equal(obs, np.stack([saved_frame] * 2))


def test_reset_with_pool_prob_one_starts_every_env_from_the_pool():
    with VecGameBoy(EMUQUEST_ROM, num_envs=1, backend="serial") as env:
        env.reset(seed=0)
        rollout(env, np.array([intro_script()[1]]).T)
        state, pool_frame = env.save_states([0])[0], env.step([NOOP])[0][0].copy()
    pool = CurriculumPool(capacity=2)
    pool.add(state, score=1.0)
    with VecGameBoy(
        EMUQUEST_ROM, num_envs=3, backend="serial", curriculum=pool, pool_prob=1.0, max_steps=1
    ) as env:
        _, info = env.reset(seed=0)
        assert (info["milestones"] == 1).all() and info["pool_starts"] == {0: 0, 1: 0, 2: 0}
        obs, _, _, truncated, info = env.step([NOOP] * 3)
        np.testing.assert_array_equal(obs, np.stack([pool_frame] * 3))
        assert truncated.all() and info["pool_starts"] == {0: 0, 1: 0, 2: 0}  # the auto-resets too


def test_auto_reset():
    max_steps = len(intro_script()[1]) + 2
    actions = scripted_actions(num_steps=max_steps, num_envs=2, seed=3)
    actions[:, 1] = NOOP  # env 1 never leaves the title screen
    actions = np.concatenate([actions, actions])  # the second episode replays the first
    with VecGameBoy(EMUQUEST_ROM, num_envs=2, backend="serial", max_steps=max_steps) as env:
        reset_obs = env.reset(seed=0)[0].copy()
        steps = rollout(env, actions)
        mode = env.ram([EmuQuest.MODE])
    rewards = np.stack([step[1] for step in steps])
    truncated = np.stack([step[3] for step in steps])
    terminated = np.stack([step[2] for step in steps])
    assert not terminated.any()
    end1, end2 = max_steps - 1, 2 * max_steps - 1
    assert truncated[end1].all() and truncated[end2].all() and truncated.sum() == 4

    episodes = steps[end1][4]["episodes"]
    assert [e["env_id"] for e in episodes] == [0, 1]
    assert [e["length"] for e in episodes] == [max_steps, max_steps]
    assert [e["left_title"] for e in episodes] == [True, False]
    assert [e["milestones"] for e in episodes] == [1, 0]  # the intro is done in env 0 only
    assert episodes[0]["maps_visited"] >= 1
    assert rewards[:max_steps, 0].sum() == 1 and rewards[:, 1].sum() == 0
    assert all(not step[4]["episodes"] for i, step in enumerate(steps) if i not in (end1, end2))
    # The observation returned with truncated=True is the first of the next episode,
    # and the next episode replays the first exactly.
    np.testing.assert_array_equal(steps[end1][0], reset_obs)
    for a, b in zip(steps[:max_steps], steps[max_steps:]):
        np.testing.assert_array_equal(a[0], b[0])
    assert steps[end2][4]["episodes"] == episodes
    assert mode[0, 0] == EmuQuest.MODE_TITLE  # both envs were just reset to power-on


class TitleIsTheGoal(EmuQuest):
    """EmuQuest where leaving the title screen finishes the game: termination without
    playing the whole game through."""

    def finished(self, memory) -> bool:
        return memory[self.MODE] != self.MODE_TITLE


def test_episode_terminates_when_the_profile_says_the_game_is_finished():
    title_steps = intro_script()[0]
    actions = np.array([[START] * title_steps + [NOOP] * 2, [NOOP] * (title_steps + 2)]).T
    with VecGameBoy(EMUQUEST_ROM, num_envs=2, backend="serial", profile=TitleIsTheGoal()) as env:
        reset_obs = env.reset(seed=0)[0].copy()
        steps = rollout(env, actions)
    end = title_steps - 1
    terminated = np.stack([step[2] for step in steps])
    assert terminated[:, 1].sum() == 0 and terminated[:, 0].sum() == 1 and terminated[end, 0]
    assert not np.stack([step[3] for step in steps]).any()
    assert steps[end][4]["episodes"] == [
        {
            "env_id": 0,
            "length": title_steps,
            "milestones": 0,
            "maps_visited": 1,
            "left_title": True,
            "title_steps": title_steps,  # the step it left the title at
            "intro_done": False,
            "intro_steps": None,
            "finished": True,
            "facts": {"battles": 0},
        }
    ]
    np.testing.assert_array_equal(steps[end][0][0], reset_obs[0])


def test_bad_action_arrays_raise_value_error():
    with VecGameBoy(EMUQUEST_ROM, num_envs=2, backend="serial") as env:
        env.reset(seed=0)
        for bad in ([0, 0, 0], [[0, 0]], [0, 8], [-1, 0], [0.0, 1.0]):
            with pytest.raises(ValueError, match="actions"):
                env.step(np.array(bad))
        env.step(np.array([0, 7]))  # still usable


def test_bad_roms_are_refused(tmp_path: Path):
    good = EMUQUEST_ROM.read_bytes()
    bad_checksum = bytearray(good)
    bad_checksum[0x14D] ^= 0xFF
    cases = {
        "missing.gb": None,
        "too_small.gb": good[: 16 * 1024],
        "odd_size.gb": good + b"\x00",
        "bad_checksum.gb": bytes(bad_checksum),
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(RomError) as error:
            VecGameBoy(path, num_envs=2, num_workers=2)
        message = str(error.value)
        assert str(path) in message and "\n" not in message
        assert not mp.active_children()  # refused before any worker started


def test_worker_error_names_the_worker_and_leaves_the_env_usable():
    with VecGameBoy(EMUQUEST_ROM, num_envs=2, num_workers=2) as env:
        env.reset(seed=0)
        with pytest.raises(RuntimeError, match=r"worker 1 .*envs 1\.\.1\) failed: .*PyBoy"):
            env.load_states([1], [b"not a state"])
        env.step(np.zeros(2, int))


@pytest.mark.timeout(60)
def test_killed_worker_raises():
    env = VecGameBoy(EMUQUEST_ROM, num_envs=4, num_workers=2)
    try:
        env.reset(seed=0)
        env.step(np.zeros(4, int))
        os.kill(env.worker_pids[1], signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"worker 1 .*envs 2\.\.3.*SIGKILL"):
            env.step(np.zeros(4, int))
        with pytest.raises(RuntimeError, match="worker 1"):  # and keeps saying so
            env.reset(seed=0)
    finally:
        env.close()
    assert not mp.active_children()


@pytest.mark.timeout(60)
def test_a_stopped_worker_is_one_clear_error_after_the_timeout():
    env = VecGameBoy(EMUQUEST_ROM, num_envs=2, num_workers=2, worker_timeout_s=2)
    try:
        env.reset(seed=0)
        os.kill(env.worker_pids[0], signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(WorkerError, match=r"worker 0 .*did not answer within 2 s \(stopped or stuck"):
            env.step(np.zeros(2, int))
        assert 2 <= time.monotonic() - started < 10
    finally:
        os.kill(env.worker_pids[0], signal.SIGCONT)
        env.close()


def test_an_ended_episodes_last_frame_is_in_info_as_gymnasium_asks():
    """Same-step autoreset: the observation is the new episode's first frame, and info["final_obs"]
    is the frame the ended episode finished on: the frame an env that does not reset shows."""
    actions = scripted_actions(num_steps=4, num_envs=2, seed=1)
    with (
        VecGameBoy(EMUQUEST_ROM, num_envs=2, backend="serial", max_steps=4) as short,
        VecGameBoy(EMUQUEST_ROM, num_envs=2, backend="serial", max_steps=100) as long,
    ):
        assert short.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP
        assert short.observation_space.shape == (2, 144, 160, 3) and short.action_space.nvec.tolist() == [
            8,
            8,
        ]
        first, _ = short.reset(seed=0)
        first = first.copy()
        long.reset(seed=0)
        for t, step_actions in enumerate(actions):
            obs, _, _, truncated, info = short.step(step_actions)
            reference, *_ = long.step(step_actions)
            assert ("final_obs" in info) == (t == 3)
        assert truncated.all() and info["_final_obs"].tolist() == [True, True]
        for env_id in range(2):
            np.testing.assert_array_equal(info["final_obs"][env_id], reference[env_id])
            np.testing.assert_array_equal(obs[env_id], first[env_id])


def test_no_child_process_remains_after_close():
    with VecGameBoy(EMUQUEST_ROM, num_envs=3, num_workers=2) as env:
        env.reset(seed=0)
        env.step(np.zeros(3, int))
        pids = env.worker_pids
        assert len(pids) == 2 and all(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not mp.active_children()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # exited and reaped
    with pytest.raises(RuntimeError, match="closed"):
        env.step(np.zeros(3, int))


def test_workers_run_as_batch_jobs_pinned_one_per_cpu_only_when_they_fill_the_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    with VecGameBoy(EMUQUEST_ROM, num_envs=4, num_workers=len(cpus)) as env:
        for w, pid in enumerate(env.worker_pids):
            assert os.sched_getscheduler(pid) == os.SCHED_BATCH
            assert os.sched_getaffinity(pid) == {cpus[w]}
    with VecGameBoy(EMUQUEST_ROM, num_envs=4, num_workers=len(cpus), pin_workers=False) as env:
        assert all(os.sched_getaffinity(pid) == set(cpus) for pid in env.worker_pids)
