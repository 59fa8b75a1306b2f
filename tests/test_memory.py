"""A policy with memory: the GRU carried through a rollout, reset at episode ends and restored with
curriculum states, and PPO's sequence minibatches against a Python loop over the same sequences; and
the route progress a policy may read beside its frames, given alike by the rollout and the evaluation;
and the burn-in that rebuilds a curriculum state's memory from the observations before it. (Exact
--resume with memory, route progress and the burn-in is tests/test_ppo.py's resume tests.)"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import evaluate_policy
from envs.curriculum import CurriculumPool
from envs.games import EMUQUEST_ROM
from envs.vec_gameboy import VecGameBoy
from models.policy import PolicyConfig, make_policy, trainable_filter
from models.quantizers import QuantizerConfig
from models.transformer import TransformerConfig
from models.vqvae import VQVAEConfig
from training.ppo import PPOState, make_burn_in, make_policy_step, make_update, ppo_loss
from training.progress import ProgressReward, ProgressSettings
from training.rollout import EnvGroup, EpisodeHistory, Runner
from training.route import Route

MEMORY = 6


def tiny_policy(memory=MEMORY, progress_bins=0):
    cfg = PolicyConfig(
        progress_bins=progress_bins,
        num_actions=4,
        encoder=VQVAEConfig(
            embed_dim=8, encoder_channels=(4, 4, 8, 8), quantizer=QuantizerConfig(codebook_size=8)
        ),
        transformer=TransformerConfig(vocab_size=8, embed_dim=8, num_layers=1, num_heads=2),
        memory=memory,
    )
    return cfg, make_policy(cfg, nnx.Rngs(0))


def sequences(steps=5, envs=4, seed=0):
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(0, 8, (steps, envs, 9, 10)), jnp.int32)
    firsts = jnp.asarray(rng.random((steps, envs)) < 0.3)
    memory = jnp.asarray(rng.normal(size=(envs, MEMORY)), jnp.float32)
    return tokens, firsts, memory


def test_unroll_is_step_repeated_and_first_empties_the_memory():
    _, policy = tiny_policy()
    tokens, firsts, memory = sequences()
    logits, values = policy.unroll(tokens, memory, firsts)
    carried, looped = memory, []
    for t in range(len(tokens)):
        step_logits, step_values, carried = policy.step(tokens[t], carried, firsts[t])
        looped.append((step_logits, step_values))
    np.testing.assert_allclose(logits, jnp.stack([a for a, _ in looped]), atol=1e-6)
    np.testing.assert_allclose(values, jnp.stack([b for _, b in looped]), atol=1e-6)
    # The memory matters, and `first` forgets it: a first frame acts as with an empty memory.
    start = jnp.ones(4, bool)
    assert not np.allclose(
        policy.step(tokens[0], memory, ~start)[0], policy.step(tokens[0], memory * 0, ~start)[0]
    )
    np.testing.assert_allclose(policy.step(tokens[0], memory, start)[0], policy(tokens[0])[0], atol=1e-6)


def test_route_progress_enters_through_its_bin():
    _, policy = tiny_policy(progress_bins=4)
    tokens, firsts, memory = sequences()
    start = jnp.ones(4, bool)
    at = lambda fraction: policy.step(tokens[0], memory, start, jnp.full(4, fraction))[0]  # noqa: E731
    progress = jnp.asarray(np.random.default_rng(2).random(firsts.shape), jnp.float32)
    logits, values = policy.unroll(tokens, memory, firsts, progress)
    carried = memory
    for t in range(len(tokens)):
        step_logits, step_values, carried = policy.step(tokens[t], carried, firsts[t], progress[t])
        np.testing.assert_allclose(logits[t], step_logits, atol=1e-6)
        np.testing.assert_allclose(values[t], step_values, atol=1e-6)
    np.testing.assert_array_equal(at(0.3), at(0.45))  # one bin: [0.25, 0.5)
    assert not np.allclose(at(0.3), at(0.6))
    np.testing.assert_array_equal(at(1.0), at(0.9))  # the end of the route is in the last bin
    with pytest.raises(ValueError, match="reads route progress"):
        policy.step(tokens[0], memory, start)


@pytest.mark.parametrize("progress_bins", [0, 4])
def test_sequence_update_equals_a_python_loop_over_the_same_sequences(progress_bins):
    """make_update(sequences=True) against the same PPO steps written out: each minibatch's env
    columns (in the epoch's permutation), the policy stepped through time in a Python loop from the
    rollout's memory (and with its route progress), the loss on every step, one optimizer step per
    minibatch (SGD: Adam would blow float noise in near-zero gradients up to whole steps)."""
    cfg, policy = tiny_policy(progress_bins=progress_bins)
    graphdef, params, frozen = nnx.split(policy, trainable_filter(cfg), ...)
    steps, envs, minibatches = 5, 4, 2
    tokens, firsts, memory0 = sequences(steps, envs)
    rng = np.random.default_rng(1)
    batch = {
        "obs": tokens,
        "actions": jnp.asarray(rng.integers(0, 4, (steps, envs)), jnp.int32),
        "log_probs": jnp.asarray(np.log(rng.uniform(0.1, 0.5, (steps, envs))), jnp.float32),
        "advantages": jnp.asarray(rng.normal(size=(steps, envs)), jnp.float32),
        "returns": jnp.asarray(rng.normal(size=(steps, envs)), jnp.float32),
        "mask": jnp.asarray(rng.random((steps, envs)) < 0.8, jnp.float32),
        "firsts": firsts,
        # Only step 0's memory is read; the others are what the rollout recorded and must not matter.
        "memory": jnp.concatenate([memory0[None], jnp.full((steps - 1, envs, MEMORY), 99.0)]),
        "progress": jnp.asarray(rng.random((steps, envs)), jnp.float32),
    }
    losses = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01)
    tx = optax.sgd(0.5)
    update = make_update(
        graphdef, frozen, tx, num_minibatches=minibatches, update_epochs=1, sequences=True, **losses
    )
    key = jax.random.PRNGKey(3)
    fresh = jax.tree.map(jnp.copy, params)
    updated, _ = update(PPOState(fresh, tx.init(fresh)), batch, key)

    order = np.asarray(jax.random.permutation(jax.random.split(key, 1)[0], envs))
    width = envs // minibatches

    @jax.jit
    @jax.grad
    def looped_grads(params, columns):
        policy = nnx.merge(graphdef, params, frozen)
        memory, logits, values = batch["memory"][0, columns], [], []
        for t in range(steps):  # one env step at a time, as the rollout ran them
            step_logits, step_values, memory = policy.step(
                tokens[t, columns], memory, firsts[t, columns], batch["progress"][t, columns]
            )
            logits.append(step_logits)
            values.append(step_values)
        flat = {
            name: batch[name][:, columns].reshape(steps * width)
            for name in ("actions", "log_probs", "advantages", "returns", "mask")
        }
        return ppo_loss(jnp.concatenate(logits), jnp.concatenate(values), flat, **losses)[0]

    params_, opt_state = params, tx.init(params)
    for m in range(minibatches):
        grads = looped_grads(params_, jnp.asarray(order[m * width : (m + 1) * width]))
        changes, opt_state = tx.update(grads, opt_state, params_)
        params_ = optax.apply_updates(params_, changes)
    for ours, looped in zip(jax.tree.leaves(updated.params), jax.tree.leaves(params_)):
        np.testing.assert_allclose(ours, looped, atol=1e-5)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_)))


class ScoreOfFrame:
    bag_size = 0

    def score(self, frames):
        return frames.reshape(len(frames), -1).mean(axis=1).astype(np.float32)


def counting_step(frames, first, memory, key, progress):
    """A stand-in policy whose memory counts the frames it has seen this episode."""
    zeros = np.zeros(len(frames))
    return frames, np.full(len(frames), 7), zeros, zeros, np.where(first[:, None], 0.0, memory) + 1.0


def test_the_rollout_carries_memory_resets_it_at_episode_ends_and_keeps_it_with_curriculum_states():
    max_steps = 4
    pool = CurriculumPool(capacity=4)
    with VecGameBoy(
        EMUQUEST_ROM,
        num_envs=2,
        backend="serial",
        frame_skip=8,
        press_frames=4,
        max_steps=max_steps,
        curriculum=pool,
        pool_prob=0.0,
    ) as env:
        group = EnvGroup(
            env, 0, ProgressReward(ScoreOfFrame(), env.num_envs, ProgressSettings(1, 0.0)), memory_size=1
        )
        runner = Runner([group], pool, seed=0)
        runner.restart(0)
        batch, _, _ = runner.rollout(counting_step, jax.random.key(0), num_steps=10)
        firsts, memory, dones = (np.asarray(batch[name]) for name in ("firsts", "memory", "dones"))
        # Each env's episodes are max_steps long: step t is the (t % max_steps)-th of its episode.
        t = np.arange(10)[:, None]
        np.testing.assert_array_equal(firsts, np.broadcast_to(t % max_steps == 0, (10, 2)))
        np.testing.assert_array_equal(dones[:-1], firsts[1:])
        # The memory before each step is the frames seen so far in the episode (stale where it starts).
        np.testing.assert_array_equal(
            np.where(firsts, 0.0, memory[..., 0]), np.broadcast_to(t % max_steps, (10, 2))
        )
        # The memory rides with the new highs saved as curriculum states: the count at that frame.
        saved = [payload["memory"] for payload in pool.payloads]
        assert saved and all(m is not None and m.shape == (1,) and 1 <= m[0] < max_steps for m in saved)

        # An env reset onto a curriculum state starts with its memory, not an empty one.
        pool.states, pool.scores, pool.payloads = (
            pool.states[:1],
            pool.scores[:1],
            [{"bag": None, "memory": np.array([42.0], np.float32)}],
        )
        env.pool_prob = 1.0
        batch, _, _ = runner.rollout(counting_step, jax.random.key(1), num_steps=6)
        firsts, memory, dones = (np.asarray(batch[name]) for name in ("firsts", "memory", "dones"))
        after_reset = np.argwhere(dones[:-1])
        assert len(after_reset)
        for step, env_id in after_reset:
            assert not firsts[step + 1, env_id] and memory[step + 1, env_id, 0] == 42.0
        runner.close()


ROUTE_FRAMES = 21


class ZeroTokens:
    """A stand-in VQ reward whose every frame is the all-zeros token grid: on a route of such frames with
    a window of 1, each frame an env shows moves it one frame along."""

    bag_size = 0
    reads_tokens = True

    def tokens(self, frames):
        return np.zeros((len(frames), 9, 10), np.int32)


def route_progress_reward(num_envs: int) -> ProgressReward:
    route = Route(np.zeros((ROUTE_FRAMES, 90), np.int32), np.arange(ROUTE_FRAMES, dtype=np.float32))
    settings = ProgressSettings(interval=1, time_penalty=0.0, route_window=1, route_tolerance=0)
    return ProgressReward(ZeroTokens(), num_envs, settings, [route])


def test_the_rollout_gives_route_progress_through_the_frame_before_and_curriculum_states_keep_it():
    """Step t of an episode from power-on (frames 0..t-1 seen) reads t/20; an env reset onto a state
    saved at route frame 10 reads 10/20, then 11/20, ..."""
    max_steps = 4
    pool = CurriculumPool(capacity=4)
    with VecGameBoy(
        EMUQUEST_ROM, num_envs=2, backend="serial", frame_skip=8, press_frames=4, max_steps=max_steps,
        curriculum=pool, pool_prob=0.0,
    ) as env:  # fmt: skip
        runner = Runner([EnvGroup(env, 0, route_progress_reward(2), memory_size=1)], pool, seed=0)
        runner.restart(0)
        batch, _, _ = runner.rollout(counting_step, jax.random.key(0), num_steps=10)
        t = np.arange(10)[:, None]
        np.testing.assert_allclose(batch["progress"], np.broadcast_to(t % max_steps / 20, (10, 2)), atol=1e-6)

        pool.states, pool.scores = pool.states[:1], pool.scores[:1]
        pool.payloads = [{"bag": None, "route": np.array([10], np.int32), "memory": None}]
        env.pool_prob = 1.0
        batch, _, _ = runner.rollout(counting_step, jax.random.key(1), num_steps=6)
        progress, dones = np.asarray(batch["progress"]), np.asarray(batch["dones"])
        after_reset = np.argwhere(dones[:-2])
        assert len(after_reset)
        for step, env_id in after_reset:
            assert progress[step + 1, env_id] == pytest.approx(10 / 20)
            assert progress[step + 2, env_id] == pytest.approx(11 / 20)
        runner.close()


def test_the_evaluation_gives_the_policy_route_progress_as_the_rollout_does():
    seen = []

    def recording(obs, t, first, route_progress):
        seen.append(np.array(route_progress))
        return np.zeros(len(obs), int)

    with VecGameBoy(
        EMUQUEST_ROM, num_envs=2, backend="serial", frame_skip=8, press_frames=4, max_steps=5
    ) as env:
        evaluate_policy.play(env, recording, 5, route_progress_reward(2), gif_frames=0, desc="test")
    np.testing.assert_allclose(np.stack(seen), np.broadcast_to(np.arange(5)[:, None] / 20, (5, 2)), atol=1e-6)


def test_a_burn_in_is_the_memory_the_policy_steps_to_from_an_empty_one():
    cfg, policy = tiny_policy(progress_bins=4)
    graphdef, params, frozen = nnx.split(policy, trainable_filter(cfg), ...)
    window = 6
    burn_in = functools.partial(make_burn_in(graphdef, window), params, frozen)
    tokens, _, _ = sequences(steps=window, envs=1)
    progress = np.random.default_rng(3).random(window).astype(np.float32)
    memory = policy.initial_memory(1)
    for t in range(window):
        _, _, memory = policy.step(tokens[t], memory, jnp.asarray([t == 0]), jnp.asarray(progress[t : t + 1]))
        # Any length up to the window: the padding in front is forgotten at the first real step.
        np.testing.assert_allclose(
            burn_in(np.asarray(tokens[: t + 1, 0]), progress[: t + 1]), memory[0], atol=1e-5
        )
    with pytest.raises(ValueError, match="replays 1 to 6 observations, got 7"):
        burn_in(np.zeros((7, 9, 10), np.int32), np.zeros(7, np.float32))


def test_an_episode_history_keeps_its_last_window_oldest_first_and_starts_on_a_states():
    history = EpisodeHistory(num_envs=2, window=3)
    assert history.last(0) is None
    for t in range(5):
        history.append(np.array([[t], [10 + t]]), np.array([t / 10, 0.5], np.float32))
    observations, progress = history.last(0)
    np.testing.assert_array_equal(observations[:, 0], [2, 3, 4])
    np.testing.assert_allclose(progress, [0.2, 0.3, 0.4])
    history.start(1)  # power-on: nothing before it
    assert history.last(1) is None
    history.start(0, (np.array([[7], [8]]), np.array([0.7, 0.8], np.float32)))  # a state saved after 7, 8
    history.append(np.array([[9], [20]]), np.array([0.9, 0.0], np.float32))
    np.testing.assert_array_equal(history.last(0)[0][:, 0], [7, 8, 9])
    np.testing.assert_array_equal(history.last(1)[0][:, 0], [20])
    history.append(np.array([[11], [21]]), np.zeros(2, np.float32))
    np.testing.assert_array_equal(history.last(0)[0][:, 0], [8, 9, 11])


def test_a_reset_onto_a_curriculum_state_replays_the_observations_before_it():
    """A real tiny policy whose weights do not change: a state's history is the observations its episode
    showed before it, the burn-in over it gives back the memory stored with it, and an env reset onto it
    starts with that memory."""
    cfg, policy = tiny_policy()
    graphdef, params, frozen = nnx.split(policy, trainable_filter(cfg), ...)
    step = make_policy_step(graphdef)
    policy_step = functools.partial(step, params, frozen)
    max_steps, window = 4, 8
    burn_in = functools.partial(make_burn_in(graphdef, window), params, frozen)
    pool = CurriculumPool(capacity=4)
    with VecGameBoy(
        EMUQUEST_ROM, num_envs=2, backend="serial", frame_skip=8, press_frames=4, max_steps=max_steps,
        curriculum=pool, pool_prob=0.0,
    ) as env:  # fmt: skip
        reward = ProgressReward(ScoreOfFrame(), env.num_envs, ProgressSettings(1, 0.0))
        runner = Runner([EnvGroup(env, 0, reward, memory_size=MEMORY, burn_in=window)], pool, seed=0)
        runner.restart(0)
        batch, _, _ = runner.rollout(policy_step, jax.random.key(0), num_steps=10, burn_in=burn_in)
        obs, firsts = np.asarray(batch["obs"]), np.asarray(batch["firsts"])
        saved = [payload for payload in pool.payloads if payload.get("history") is not None]
        assert saved
        for payload in saved:
            history = payload["history"]
            # The observations before the state: a run of the batch's steps from an episode's first.
            matches = [
                (t, e)
                for t in range(len(obs) - len(history) + 1)
                for e in range(2)
                if firsts[t, e] and np.array_equal(obs[t : t + len(history), e], history)
            ]
            assert matches and 1 <= len(history) < max_steps
            np.testing.assert_allclose(
                burn_in(history, payload["history_progress"]), payload["memory"], atol=1e-5
            )

        # Every reset goes to the first saved state, whose stored memory is replaced by zeros: the envs
        # must start on the burn-in's memory, not the stored one.
        index = pool.payloads.index(saved[0])
        expected = np.asarray(burn_in(saved[0]["history"], saved[0]["history_progress"]))
        pool.states, pool.scores = [pool.states[index]], [pool.scores[index]]
        pool.payloads = [{**saved[0], "memory": np.zeros(MEMORY, np.float32)}]
        env.pool_prob = 1.0
        batch, _, _ = runner.rollout(policy_step, jax.random.key(1), num_steps=6, burn_in=burn_in)
        firsts, memory, dones = (np.asarray(batch[name]) for name in ("firsts", "memory", "dones"))
        after_reset = np.argwhere(dones[:-1])
        assert len(after_reset)
        for t, e in after_reset:
            assert not firsts[t + 1, e]
            np.testing.assert_allclose(memory[t + 1, e], expected, atol=1e-6)
        runner.restart(2)  # every env starts on the state: its memory is rebuilt when a rollout starts
        with pytest.raises(ValueError, match="pass rollout\\(burn_in=...\\)"):
            runner.rollout(policy_step, jax.random.key(2), num_steps=1)
        runner.close()
