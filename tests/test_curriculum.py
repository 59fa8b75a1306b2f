"""CurriculumPool: weighted sampling, the reset rule, eviction and plain-data round trip; MasteryPool:
episode outcomes per state and resets by failure; BackwardChain: thinning, the start pointer and its
reset rule."""

import numpy as np
import pytest
from scipy import stats

from envs.curriculum import (
    BACKWARD_AHEAD,
    BACKWARD_PATIENCE,
    BACKWARD_SUCCESSES,
    BACKWARD_WINDOW,
    MASTERY_AHEAD,
    MASTERY_WINDOW,
    BackwardChain,
    CurriculumPool,
    MasteryPool,
)


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


def test_a_full_thinned_pool_drops_the_state_whose_neighbours_are_closest():
    pool = CurriculumPool(capacity=5, thin=True)
    for i, score in enumerate([4.0, 0.0, 1.0, 1.5, 9.0]):  # kept in the order added, not by score
        pool.add(f"state {i}".encode(), score, payload=f"payload {score}")
    assert pool.add(b"new high", 9.5)
    assert pool.scores == [4.0, 0.0, 1.5, 9.0, 9.5]  # 1.0 went: 0.0 and 1.5 are the closest neighbours
    assert pool.payloads[:3] == ["payload 4.0", "payload 0.0", "payload 1.5"]
    assert not pool.add(b"crowded", 9.4)  # the new state is the one closest to its neighbours
    assert pool.scores == [4.0, 0.0, 1.5, 9.0, 9.5]
    for score in range(20, 40):  # the lowest, near the start, always stays
        pool.add(b"", float(score))
    assert min(pool.scores) == 0.0 and max(pool.scores) == 39.0 and len(pool) == 5
    assert CurriculumPool.from_dict(pool.to_dict()).thin
    with pytest.raises(ValueError, match="capacity >= 3"):
        CurriculumPool(capacity=2, thin=True)


def test_pool_round_trips_through_plain_data():
    pool = make_pool([0.0, 1.5], capacity=4, temperature=0.5)
    pool.add(b"with payload", 1.0, payload=[1, 0, 1])
    data = pool.to_dict()
    assert {type(s) for s in data["states"]} == {bytes} and {type(s) for s in data["scores"]} == {float}
    restored = CurriculumPool.from_dict(data)
    assert restored.to_dict() == data
    np.testing.assert_array_equal(restored.weights(), pool.weights())
    with pytest.raises(ValueError, match="disagree"):
        CurriculumPool.from_dict(data | {"scores": data["scores"][:-1]})
    with pytest.raises(ValueError, match="capacity"):
        CurriculumPool.from_dict(data | {"capacity": 2})


def test_bad_pool_arguments_raise():
    with pytest.raises(ValueError, match="capacity"):
        CurriculumPool(capacity=0)
    with pytest.raises(ValueError, match="temperature"):
        CurriculumPool(temperature=0.0)
    with pytest.raises(ValueError, match="empty"):
        CurriculumPool().sample(np.random.default_rng(0), 1)


def make_chain(scores, capacity=8, goal=10.0) -> BackwardChain:
    chain = BackwardChain(capacity, goal)
    for score in scores:
        chain.add(f"state {score}".encode(), score, payload=f"payload {score}")
    return chain


def test_a_full_chain_drops_the_entry_whose_neighbours_are_closest():
    chain = make_chain([0.0, 1.0, 1.5, 4.0, 9.0], capacity=5)
    chain.add(b"new high", 9.5)
    assert chain.scores == [0.0, 1.5, 4.0, 9.0, 9.5]  # 1.0 went: 0.0 and 1.5 are the closest neighbours
    assert chain.states[-1] == b"new high" and chain.payloads[:2] == ["payload 0.0", "payload 1.5"]
    chain.add(b"not a high", 6.5)  # goes in score order; then 9.0, between 6.5 and 9.5, goes
    assert chain.scores == [0.0, 1.5, 4.0, 6.5, 9.5] and chain.states[3] == b"not a high"
    for score in range(20, 40):  # the first entry, the run's initial state, always stays
        chain.add(b"", float(score))
    assert chain.scores[0] == 0.0 and chain.scores[-1] == 39.0 and len(chain) == 5


def test_the_pointer_follows_the_frontier_until_the_goal_is_reached_then_walks_back():
    chain = make_chain([float(score) for score in range(10)], capacity=16, goal=20.0)
    assert chain.start() == 9
    chain.record(9.0, reached=19.0)  # no success yet: still exploring, the pointer follows new highs
    chain.add(b"", 10.0)
    assert chain.start() == 10 and chain.outcomes == []
    chain.record(10.0, reached=20.0)  # a success pins the pointer to its entry
    chain.add(b"", 11.0)
    assert chain.start() == 10 and chain.outcomes == [True]
    chain.record(11.0, reached=20.0)  # an episode from another entry is not the pointer's
    chain.record(float("nan"), reached=20.0)  # nor is one from power-on
    assert chain.outcomes == [True]
    for _ in range(BACKWARD_WINDOW):  # failures push the one success out of the window
        chain.record(10.0, reached=19.5)
    assert chain.start() == 10 and sum(chain.outcomes) == 0 and len(chain.outcomes) == BACKWARD_WINDOW
    for _ in range(BACKWARD_SUCCESSES):
        chain.record(10.0, reached=25.0)
    assert chain.start() == 9 and chain.outcomes == [] and chain.tries == 0  # back one, a fresh record
    # Within BACKWARD_AHEAD of the end an episode must reach the goal; before, the entry that far on.
    for entry in (9.0, 8.0):
        for _ in range(BACKWARD_SUCCESSES):
            chain.record(entry, reached=20.0)
    assert chain.start() == 7 and 7 + BACKWARD_AHEAD == 11
    chain.record(7.0, reached=10.5)  # short of entry 11, the last (score 11.0)
    assert chain.outcomes == [False]
    chain.record(7.0, reached=11.0)
    chain.record(7.0, reached=11.0)
    assert chain.start() == 6
    chain.record(6.0, reached=10.5)  # past entry 10 (score 10.0)
    chain.record(6.0, reached=9.5)  # short of it
    assert chain.outcomes == [True, False]
    chain.record(6.0, reached=10.0)
    assert chain.start() == 5
    # A stretch never mastered stops blocking the pointer after BACKWARD_PATIENCE episodes.
    for _ in range(BACKWARD_PATIENCE - 1):
        chain.record(5.0, reached=5.0)
    assert chain.start() == 5
    chain.record(5.0, reached=5.0)
    assert chain.start() == 4 and chain.tries == 0
    for entry in (4.0, 3.0, 2.0, 1.0, 0.0, 0.0):
        for _ in range(BACKWARD_SUCCESSES):
            chain.record(entry, reached=20.0)
    assert chain.start() == 0  # the first entry is as far back as it goes


def test_half_the_chain_resets_take_the_pointer_and_the_rest_the_entries_from_it_on():
    chain = make_chain([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    chain.start_score = 2.0
    picks = chain.reset_picks(np.random.default_rng(0), 20_000, pool_prob=0.5)
    from_pool = np.array([p for p in picks if p is not None])
    assert abs(len(from_pool) / len(picks) - 0.5) < 0.02
    counts = np.bincount(from_pool, minlength=6)
    assert counts[:2].sum() == 0  # never behind the pointer
    np.testing.assert_allclose(counts[2:] / len(from_pool), [0.5 + 0.5 / 4] + [0.5 / 4] * 3, atol=0.02)
    assert make_chain([]).reset_picks(np.random.default_rng(0), 2, pool_prob=1.0) == [None, None]


def test_chain_round_trips_through_plain_data_and_refuses_a_tiny_capacity():
    chain = make_chain([0.0, 1.0, 2.0])
    chain.record(2.0, reached=10.0)
    data = chain.to_dict()
    restored = BackwardChain.from_dict(data)
    assert restored.to_dict() == data and restored.start() == 2
    assert (restored.outcomes, restored.tries) == ([True], 1)
    assert "temperature" not in data  # the chain draws by its pointer, not by score
    with pytest.raises(ValueError, match="BackwardChain.from_dict: states, scores and payloads disagree"):
        BackwardChain.from_dict(data | {"payloads": []})
    with pytest.raises(ValueError, match="capacity"):
        BackwardChain(2, goal=1.0)


def make_mastery_pool(scores, capacity=8) -> MasteryPool:
    pool = MasteryPool(capacity=capacity)
    for i, score in enumerate(scores):
        pool.add(f"state {i}".encode(), score)
    return pool


def test_a_mastery_pool_scores_each_episode_against_the_state_a_few_further_up():
    assert MASTERY_AHEAD == 4
    pool = make_mastery_pool([0.0, 6.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # kept in the order added
    pool.record(0.0, reached=3.9)  # the state 4 further up scores 4: short of it
    pool.record(0.0, reached=4.0)
    pool.record(4.0, reached=5.9)  # 2 states above it: it must reach the highest, 6
    pool.record(4.0, reached=6.0)
    pool.record(6.0, reached=6.5)  # the highest: beating its own score is a success
    pool.record(6.0, reached=6.0)
    pool.record(float("nan"), reached=9.0)  # a power-on episode
    pool.record(7.0, reached=9.0)  # a state dropped since
    assert pool.outcomes == [[False, True], [True, False], [], [], [], [False, True], []]
    np.testing.assert_allclose(pool.success_rates(), [0.5, 0.5] + [0.5] * 5)
    for _ in range(MASTERY_WINDOW + 3):
        pool.record(1.0, reached=4.5)
    assert pool.outcomes[2] == [False] * MASTERY_WINDOW  # the last episodes only
    assert pool.success_rates()[2] == pytest.approx(1 / (MASTERY_WINDOW + 2))


def test_a_full_mastery_pool_drops_the_lowest_state_with_its_outcomes():
    pool = make_mastery_pool([1.0, 0.0, 2.0], capacity=3)
    pool.outcomes = [[True], [False], [True, True]]
    assert not pool.add(b"below every state", -1.0) and pool.outcomes == [[True], [False], [True, True]]
    assert pool.add(b"new", 3.0)
    assert pool.scores == [1.0, 2.0, 3.0] and pool.outcomes == [[True], [True, True], []]


def test_a_thinned_mastery_pool_keeps_its_outcomes_with_their_states():
    pool = MasteryPool(capacity=3, thin=True)
    for i, score in enumerate([0.0, 2.0, 1.9]):
        pool.add(f"state {i}".encode(), score)
    pool.outcomes = [[False], [True], [True, False]]
    assert pool.add(b"new", 3.0)  # 2.0 goes: its neighbours 1.9 and 3.0 are the closest
    assert pool.scores == [0.0, 1.9, 3.0] and pool.outcomes == [[False], [True, False], []]
    assert MasteryPool.from_dict(pool.to_dict()).to_dict() == pool.to_dict()


def test_half_the_mastery_resets_go_by_failure_and_half_by_score():
    pool = make_mastery_pool([0.0, 0.0, 0.0])  # equal scores: the softmax half is uniform
    pool.outcomes = [[False] * MASTERY_WINDOW, [True] * MASTERY_WINDOW, []]
    picks = np.array(pool.reset_picks(np.random.default_rng(0), 30_000, pool_prob=1.0))
    failure = 1 - np.array([1, MASTERY_WINDOW + 1, 9]) / np.array([18, 18, 18])
    expected = 0.5 / 3 + 0.5 * failure / failure.sum()
    np.testing.assert_allclose(np.bincount(picks, minlength=3) / len(picks), expected, atol=0.01)
    picks = pool.reset_picks(np.random.default_rng(0), 10_000, pool_prob=0.25)
    assert abs(sum(p is not None for p in picks) / len(picks) - 0.25) < 0.02
    assert make_mastery_pool([]).reset_picks(np.random.default_rng(0), 2, pool_prob=1.0) == [None, None]


def test_a_mastery_pool_round_trips_through_plain_data():
    pool = make_mastery_pool([0.0, 1.0], capacity=4)
    pool.record(0.0, reached=1.0)
    data = pool.to_dict()
    restored = MasteryPool.from_dict(data)
    assert restored.to_dict() == data and restored.outcomes == [[True], []]
    with pytest.raises(ValueError, match="one list of outcomes per state"):
        MasteryPool.from_dict(data | {"outcomes": [[True]]})
