"""Phase 3 (train_with_cnn_reward.py): PPO pieces, reward, curriculum and exact resume.

Everything runs at tiny sizes on the embedded game with the serial VecGameBoy backend."""

import numpy as np
import jax.numpy as jnp
import pytest

import train_with_cnn_reward as ppo


def python_gae(rewards, values, dones, last_value, gamma, lam):
    num_steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    next_advantage = np.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(num_steps)):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_advantage = delta + gamma * lam * not_done * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def test_gae_matches_python_loop():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(37, 5)).astype(np.float32)
    values = rng.normal(size=(37, 5)).astype(np.float32)
    dones = (rng.random((37, 5)) < 0.1).astype(np.float32)
    last_value = rng.normal(size=5).astype(np.float32)
    expected_adv, expected_ret = python_gae(rewards, values, dones, last_value, 0.99, 0.95)
    adv, ret = ppo.compute_gae(
        jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(dones), jnp.asarray(last_value), 0.99, 0.95
    )
    np.testing.assert_allclose(adv, expected_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected_ret, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keep_fraction", [0.8, 0.5, 0.25, 1.0])
def test_return_filter_keeps_exactly_the_top_fraction(keep_fraction):
    rng = np.random.default_rng(1)
    num_steps, num_envs = 16, 5
    dones = np.zeros((num_steps, num_envs), np.float32)
    dones[[3, 9], 0] = 1  # env 0: 3 segments; env 2: 2 segments; others: 1 each
    dones[7, 2] = 1
    rewards = rng.normal(size=(num_steps, num_envs)).astype(np.float32)
    segments = [(0, 0, 4), (0, 4, 10), (0, 10, 16), (1, 0, 16), (2, 0, 8), (2, 8, 16), (3, 0, 16), (4, 0, 16)]
    assert len(segments) == 8
    returns = np.array([rewards[a:b, env].sum() for env, a, b in segments])

    mask, kept, total = ppo.return_filter_mask(jnp.asarray(rewards), jnp.asarray(dones), keep_fraction)
    mask = np.asarray(mask)
    num_keep = round(keep_fraction * 8)
    assert int(total) == 8 and int(kept) == num_keep
    best = set(np.argsort(-returns)[:num_keep])
    for index, (env, a, b) in enumerate(segments):
        expected = 1.0 if index in best else 0.0
        assert (mask[a:b, env] == expected).all(), (index, keep_fraction)
