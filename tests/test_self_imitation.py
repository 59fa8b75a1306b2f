"""Self-imitation: which episodes are kept and how they are replayed, its loss, and one update.
(Exact --resume with self-imitation is tests/test_ppo.py's resume test.)"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from models.policy import trainable_filter
from tests.test_memory import tiny_policy
from training.ppo import PPOState
from training.self_imitation import (
    SelfImitation,
    discounted_returns,
    make_self_imitation_update,
    self_imitation_loss,
)


def rollout(actions, rewards, dones, firsts):
    """A (T, N) batch whose obs are 9x10 grids filled with the action, so a kept episode shows its steps."""
    actions = np.asarray(actions, np.int32)
    return {
        "obs": np.broadcast_to(actions[..., None, None], (*actions.shape, 9, 10)).copy(),
        "actions": actions,
        "progress": np.zeros(actions.shape, np.float32),
        "rewards": np.asarray(rewards, np.float32),
        "dones": np.asarray(dones, np.float32),
        "firsts": np.asarray(firsts, bool),
    }


def test_discounted_returns_sum_to_the_episodes_end():
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 0.0, 2.0]), 0.5), [1.5, 1.0, 2.0])


def test_episodes_from_power_on_are_kept_across_rollouts_and_the_best_replace_the_worst():
    """Env 0 plays a power-on episode over two rollouts, then one from a curriculum state (its first step
    keeps the memory); env 1 starts on a curriculum state, then plays power-on episodes, the last cut by a
    checkpoint's rollout. Three episodes qualify; two are kept, the better two."""
    memory = SelfImitation(capacity=2, num_envs=2, max_steps=8, gamma=1.0)
    memory.add(
        rollout(
            actions=[[1, 4], [2, 4], [3, 5]],
            rewards=[[0, 0], [1, 9], [0, 1]],
            dones=[[0, 0], [0, 1], [0, 0]],
            firsts=[[1, 0], [0, 0], [0, 1]],
        )
    )
    assert len(memory) == 0  # env 1's first episode came from a curriculum state
    memory.add(
        rollout(
            actions=[[4, 6], [5, 7], [6, 1]],
            rewards=[[2, 1], [5, 0], [5, 3]],
            dones=[[1, 1], [0, 0], [0, 0]],
            firsts=[[0, 0], [0, 1], [0, 0]],
        ),
        episode_boundary=True,
    )
    # Env 0's episode (1, 2, 3, 4) returns 3; env 1's (5, 6) returns 2 and (7, 1) returns 3. Env 0's
    # curriculum episode (5, 6) returns 10 and is not kept.
    kept = sorted((e["total"], tuple(e["actions"])) for e in memory.episodes)
    assert kept == [(3.0, (1, 2, 3, 4)), (3.0, (7, 1))]
    episode = next(e for e in memory.episodes if len(e["actions"]) == 4)
    np.testing.assert_array_equal(episode["obs"][:, 0, 0], [1, 2, 3, 4])
    np.testing.assert_allclose(episode["returns"], [3, 3, 2, 2])
    assert memory.starting.all() and memory.open == [None, None]  # the checkpoint ended every episode

    batch = memory.sample(jax.random.PRNGKey(0), 3)
    assert batch["obs"].shape == (8, 3, 9, 10) and batch["actions"].shape == (8, 3)
    lengths = batch["valid"].sum(0)
    assert set(lengths) <= {2.0, 4.0}
    for column, length in enumerate(lengths.astype(int)):
        padding = slice(length, None), column
        assert (batch["actions"][padding] == 0).all() and (batch["returns"][padding] == 0).all()
    assert batch["firsts"][0].all() and not batch["firsts"][1:].any()

    restored = SelfImitation(capacity=2, num_envs=2, max_steps=8, gamma=1.0)
    restored.load_state_dict(memory.state_dict())
    np.testing.assert_array_equal(restored.sample(jax.random.PRNGKey(0), 3)["actions"], batch["actions"])
    with pytest.raises(ValueError, match="an episode of 9 steps: more than 8"):
        restored.add(rollout([[1]] * 9, [[0]] * 9, [[0]] * 8 + [[1]], [[1]] + [[0]] * 8))


def test_the_loss_imitates_only_where_the_return_beats_the_value():
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.25, 0.75]]]))  # (L=1, B=2, A=2)
    batch = {
        "actions": jnp.array([[0, 1]]),
        "returns": jnp.array([[3.0, 1.0]]),
        "valid": jnp.array([[1.0, 1.0]]),
    }
    loss, metrics = self_imitation_loss(logits, jnp.array([[1.0, 2.0]]), batch, value_coef=0.1)
    # Only the first step's return (3) beats its value (1): advantage 2, on log 0.5.
    assert float(metrics["self_imitation/policy_loss"]) == pytest.approx(-np.log(0.5) * 2 / 2)
    assert float(metrics["self_imitation/value_loss"]) == pytest.approx(0.5 * 4 / 2)
    assert float(loss) == pytest.approx(np.log(0.5) * -1 + 0.1 * 1.0)
    assert float(metrics["self_imitation/above_value"]) == 0.5
    padded = {**batch, "valid": jnp.array([[0.0, 1.0]])}  # the padding after an episode counts for nothing
    assert float(self_imitation_loss(logits, jnp.array([[1.0, 2.0]]), padded)[0]) == 0.0


def test_an_update_makes_the_kept_actions_likelier_and_leaves_a_policy_that_does_as_well_alone():
    cfg, policy = tiny_policy()
    graphdef, params, frozen = nnx.split(policy, trainable_filter(cfg), ...)
    tx = optax.adam(1e-2)
    update = make_self_imitation_update(graphdef, frozen, tx, coef=1.0)
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.integers(0, 8, (5, 2, 9, 10)).astype(np.int32),
        "actions": rng.integers(0, 4, (5, 2)).astype(np.int32),
        "progress": np.zeros((5, 2), np.float32),
        "returns": np.full((5, 2), 10.0, np.float32),
        "valid": np.ones((5, 2), np.float32),
        "firsts": np.eye(5, 2, dtype=bool)[:, :1].repeat(2, 1),
    }

    def log_likelihood(params):
        model = nnx.merge(graphdef, params, frozen)
        logits, _ = model.unroll(batch["obs"], model.initial_memory(2), batch["firsts"], batch["progress"])
        return float(jnp.take_along_axis(jax.nn.log_softmax(logits), batch["actions"][..., None], -1).sum())

    before = log_likelihood(params)
    copy = jax.tree.map(jnp.copy, params)
    state, metrics = update(PPOState(copy, tx.init(copy)), batch)
    assert log_likelihood(state.params) > before and float(metrics["self_imitation/above_value"]) == 1.0
    # Returns below every value: nothing to imitate, and the weights stay as they were.
    below = {**batch, "returns": np.full((5, 2), -1e3, np.float32)}
    copy = jax.tree.map(jnp.copy, params)
    state, metrics = update(PPOState(copy, tx.init(copy)), below)
    assert float(metrics["self_imitation/above_value"]) == 0.0
    jax.tree.map(np.testing.assert_array_equal, state.params, params)
