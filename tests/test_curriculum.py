"""CurriculumPool: weighted sampling, the reset rule, eviction and plain-data round trip."""

import numpy as np
import pytest
from scipy import stats

from envs.curriculum import CurriculumPool


def make_pool(scores, capacity=8, temperature=1.0) -> CurriculumPool:
    pool = CurriculumPool(capacity=capacity, temperature=temperature)
    for i, score in enumerate(scores):
        pool.add(f"state {i}".encode(), score)
    return pool


def test_weights_are_a_softmax_of_score_over_temperature():
    pool = make_pool([0.0, 1.0, 3.0], temperature=2.0)
    expected = np.exp(np.array([0.0, 0.5, 1.5]))
    np.testing.assert_allclose(pool.weights(), expected / expected.sum())
    assert np.all(np.diff(pool.weights()) > 0)  # higher progress, more likely


def test_curriculum_picks_states_in_proportion_to_its_weights():
    pool = make_pool([0.0, 1.0, 2.0, 3.0])
    draws = 20_000
    counts = np.bincount(pool.sample(np.random.default_rng(0), draws), minlength=4)
    # Chi-square goodness of fit; with a fixed seed this is deterministic, and a
    # sampler that ignored the weights (uniform) would give a statistic in the thousands.
    _, p_value = stats.chisquare(counts, draws * pool.weights())
    assert p_value > 0.01
    assert stats.chisquare(counts)[1] < 1e-10  # clearly not uniform


def test_reset_rule_takes_pool_states_with_probability_pool_prob():
    pool = make_pool([0.0, 2.0])
    picks = pool.reset_picks(np.random.default_rng(1), 10_000, pool_prob=0.3)
    from_pool = [p for p in picks if p is not None]
    assert abs(len(from_pool) / len(picks) - 0.3) < 0.02
    share_best = sum(p == 1 for p in from_pool) / len(from_pool)
    assert abs(share_best - pool.weights()[1]) < 0.03
    assert CurriculumPool().reset_picks(np.random.default_rng(0), 3, pool_prob=1.0) == [None] * 3
    assert pool.reset_picks(np.random.default_rng(0), 3, pool_prob=0.0) == [None] * 3


def test_full_pool_replaces_its_lowest_score():
    pool = make_pool([5.0, 1.0, 1.0], capacity=3)
    assert not pool.add(b"worse", 0.5, payload="worse's")
    assert pool.add(b"better", 2.0, payload="better's")
    assert pool.scores == [5.0, 1.0, 2.0]  # the older of the two 1.0 states went
    assert pool.states == [b"state 0", b"state 2", b"better"]
    assert pool.payloads == [None, None, "better's"]  # payloads stay with their states


def test_pool_round_trips_through_plain_data():
    pool = make_pool([0.0, 1.5], capacity=4, temperature=0.5)
    pool.add(b"with payload", 1.0, payload=[1, 0, 1])
    data = pool.to_dict()
    assert {type(s) for s in data["states"]} == {bytes} and {type(s) for s in data["scores"]} == {float}
    restored = CurriculumPool.from_dict(data)
    assert restored.to_dict() == data
    np.testing.assert_array_equal(restored.weights(), pool.weights())


def test_bad_pool_arguments_raise():
    with pytest.raises(ValueError, match="capacity"):
        CurriculumPool(capacity=0)
    with pytest.raises(ValueError, match="temperature"):
        CurriculumPool(temperature=0.0)
    with pytest.raises(ValueError, match="empty"):
        CurriculumPool().sample(np.random.default_rng(0), 1)
