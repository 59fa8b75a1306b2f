"""Curriculum pool: saved emulator states keyed by a progress score.

The seed's recipe: "probabilistically reset envs to checkpoints; weighted sampling
toward higher progress states". Training (Phase 3) adds states it judges good; at
every reset VecGameBoy asks the pool whether to start from power-on (or the
configured initial state) or from one of these states.

Weighting: softmax over score / temperature. A state one temperature unit ahead of
another is e (~2.7) times as likely to be drawn. Softmax keeps every state
reachable, unlike always taking the best one, so the agent keeps practising the
stretch just before its frontier. Scores are whatever progress measure the trainer
uses (milestones, learned reward); pick the temperature in that unit.

When full, a new state replaces the lowest-scoring one (oldest among ties), and is
dropped if it scores below all of them: the pool drifts toward the frontier. A thinned
pool instead drops the state whose neighbours in score are closest (never the lowest or
highest), as BackwardChain does, so the states near the start stay along with the frontier.

Each state may carry a payload, whatever the trainer must restore with it (PPO keeps the
reward's bag of seen tokens there); VecGameBoy reports which pool entry each reset loaded.

Everything is plain data (bytes, floats, payloads), so `to_dict()` can go straight into a
checkpoint and `from_dict()` restores it for --resume.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

# The backward pointer moves back once this many of the last BACKWARD_WINDOW episodes from its entry
# succeeded: 25%, near the 20% Salimans & Chen moved on at, and 8 episodes are a few iterations.
BACKWARD_WINDOW = 8
BACKWARD_SUCCESSES = 2
# An episode from the pointer succeeds by reaching the entry this many further on (a room or so in a
# chain of 32 over EmuQuest), or the goal from the last few: a stretch is practised until it holds.
BACKWARD_AHEAD = 4
# A stretch still unmastered after this many episodes stops blocking the ones before it; it stays in
# the range the other half of the resets is drawn from.
BACKWARD_PATIENCE = 32
# A MasteryPool state's success rate counts the last this many episodes that began on it: a few
# iterations' worth for a state drawn once or twice an iteration.
MASTERY_WINDOW = 16
# A MasteryPool episode succeeds by reaching the score of the state this many further up: the next
# state alone is often a tile away in the same room, which an episode that never leaves it reaches.
MASTERY_AHEAD = 4


def most_crowded(ranked_scores) -> int:
    """Index of the entry whose neighbours are closest in a list of scores in rising order, never the
    first or last: the one a thinned chain can lose at least cost."""
    ranked = np.asarray(ranked_scores)
    return 1 + int(np.argmin(ranked[2:] - ranked[:-2]))


class SavedStates(ABC):
    """What every curriculum keeps: emulator states with their scores and payloads, at most `capacity`,
    and the reset rule VecGameBoy asks (`reset_picks`). Subclasses decide what is kept and drawn."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"{type(self).__name__} capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.states: list[bytes] = []
        self.scores: list[float] = []
        self.payloads: list = []  # per state, whatever `add` was given with it (None: nothing)

    def __len__(self) -> int:
        return len(self.states)

    @abstractmethod
    def add(self, state: bytes, score: float, payload=None, key: bytes | None = None) -> bool:
        """Offer a state (with its payload, and for a cell archive its cell's key); True if it was kept."""

    @abstractmethod
    def reset_picks(self, rng: np.random.Generator, n: int, pool_prob: float) -> list[int | None]:
        """The reset rule for n resets: a stored state's index each, or None for the env's usual start."""

    def to_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "states": list(self.states),
            "scores": list(self.scores),
            "payloads": list(self.payloads),
        }

    def _load_states(self, data: dict):
        """Takes the states, scores and payloads of a `to_dict`, checked against each other and the
        capacity."""
        states, scores = data["states"], data["scores"]
        payloads = data.get("payloads", [None] * len(states))
        if len(states) > self.capacity or not len(states) == len(scores) == len(payloads):
            raise ValueError(
                f"{type(self).__name__}.from_dict: states, scores and payloads disagree with each other "
                "or the capacity"
            )
        self.states = [bytes(s) for s in states]
        self.scores = [float(s) for s in scores]
        self.payloads = list(payloads)


class CurriculumPool(SavedStates):
    def __init__(self, capacity: int = 64, temperature: float = 1.0, thin: bool = False):
        super().__init__(capacity)
        if not temperature > 0:
            raise ValueError(f"CurriculumPool temperature must be > 0, got {temperature}")
        if thin and capacity < 3:
            raise ValueError(
                f"a thinned CurriculumPool keeps its lowest and highest: capacity >= 3, got {capacity}"
            )
        self.temperature = temperature
        self.thin = thin

    def add(self, state: bytes, score: float, payload=None, key: bytes | None = None) -> bool:
        """Store a state (and its payload); returns False when the pool is full and the new state is the
        one dropped. `key` names a CellArchive's cell; this pool has none and ignores it."""
        # Appended, so list order stays oldest-first for tie-breaking.
        self._append(bytes(state), float(score), payload)
        if len(self.states) <= self.capacity:
            return True
        drop = self._thinned() if self.thin else int(np.argmin(self.scores))  # argmin: the oldest among ties
        self._drop(drop)
        return drop != len(self.states)

    def _thinned(self) -> int:
        """The state whose neighbours in score are closest, never the lowest or highest."""
        order = np.argsort(self.scores, kind="stable")
        return int(order[most_crowded(np.asarray(self.scores)[order])])

    def _append(self, state: bytes, score: float, payload):
        self.states.append(state)
        self.scores.append(score)
        self.payloads.append(payload)

    def _drop(self, index: int):
        del self.states[index], self.scores[index], self.payloads[index]

    def weights(self) -> np.ndarray:
        """Sampling probability of each stored state, shape (len(self),)."""
        logits = np.asarray(self.scores, dtype=np.float64) / self.temperature
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Indices of n states drawn with replacement by `weights()`."""
        if not self.states:
            raise ValueError("CurriculumPool.sample: the pool is empty")
        return rng.choice(len(self.states), size=n, p=self.weights())

    def reset_picks(self, rng: np.random.Generator, n: int, pool_prob: float) -> list[int | None]:
        """The reset rule for n resets: each takes a pool state (its index) with probability
        pool_prob (None when the pool is empty), else None = the env's usual start."""
        if not self.states or pool_prob <= 0:
            return [None] * n
        from_pool = rng.random(n) < pool_prob
        picks = self.sample(rng, n)
        return [int(i) if use else None for i, use in zip(picks, from_pool)]

    def to_dict(self) -> dict:
        return super().to_dict() | {"temperature": self.temperature, "thin": self.thin}

    @classmethod
    def from_dict(cls, data: dict) -> CurriculumPool:
        pool = cls(int(data["capacity"]), float(data["temperature"]), bool(data.get("thin", False)))
        pool._load_states(data)
        return pool


class MasteryPool(CurriculumPool):
    """The pool of new highs, with half its resets on the states that episodes fail to get further
    from (the idea of Prioritized Level Replay, Jiang et al. 2021, with a success rate in place of the
    value loss). Each state keeps the outcomes of the last MASTERY_WINDOW episodes that began on it: an
    episode succeeds by reaching the score of the state MASTERY_AHEAD further up (the highest's from
    the last few), or from the highest by beating its score. Half of the pool's resets are drawn by
    softmax(score / temperature), as in CurriculumPool; the other half in proportion to 1 - the state's
    success rate, (successes + 1) / (episodes + 2), so an untried state counts as half mastered and a
    state every episode fails from is drawn ~15x as often as one every episode gets past."""

    def __init__(self, capacity: int = 64, temperature: float = 1.0, thin: bool = False):
        super().__init__(capacity, temperature, thin)
        self.outcomes: list[list[bool]] = []  # per state, its last episodes' successes

    def _append(self, state: bytes, score: float, payload):
        super()._append(state, score, payload)
        self.outcomes.append([])

    def _drop(self, index: int):
        super()._drop(index)
        del self.outcomes[index]

    def success_rates(self) -> np.ndarray:
        """(len(self),) each state's (successes + 1) / (episodes + 2) over its last episodes."""
        return np.array([(sum(o) + 1) / (len(o) + 2) for o in self.outcomes], np.float64)

    def record(self, start_score: float, reached: float):
        """An episode that began on the state scoring `start_score` reached `reached` at best (a state
        dropped since, or a power-on start (NaN), is not recorded)."""
        if start_score not in self.scores:
            return
        above = sorted(score for score in self.scores if score > start_score)
        success = reached >= above[min(MASTERY_AHEAD, len(above)) - 1] if above else reached > start_score
        at = self.scores.index(start_score)
        self.outcomes[at] = (self.outcomes[at] + [bool(success)])[-MASTERY_WINDOW:]

    def reset_picks(self, rng: np.random.Generator, n: int, pool_prob: float) -> list[int | None]:
        if not self.states or pool_prob <= 0:
            return [None] * n
        from_pool = rng.random(n) < pool_prob
        by_score = self.sample(rng, n)
        unmastered = 1.0 - self.success_rates()
        by_failure = rng.choice(len(self.states), size=n, p=unmastered / unmastered.sum())
        on_failure = rng.random(n) < 0.5
        picks = np.where(on_failure, by_failure, by_score)
        return [int(i) if use else None for i, use in zip(picks, from_pool)]

    def to_dict(self) -> dict:
        return super().to_dict() | {"outcomes": [list(o) for o in self.outcomes]}

    @classmethod
    def from_dict(cls, data: dict) -> MasteryPool:
        pool = cls(int(data["capacity"]), float(data["temperature"]), bool(data.get("thin", False)))
        pool._load_states(data)
        if len(data["outcomes"]) != len(pool.states):
            raise ValueError("MasteryPool.from_dict: one list of outcomes per state expected")
        pool.outcomes = [[bool(x) for x in o] for o in data["outcomes"]]
        return pool


class BackwardChain(SavedStates):
    """Go-Explore's robustify phase (Ecoffet et al. 2021; Salimans & Chen 2018, "Learning Montezuma's
    Revenge from a single demonstration"): the pool's chain of new highs is the demonstration, and
    episodes start ever further back along it.

    A start pointer picks one entry. Half the pool's resets load it, the other half an entry drawn
    uniformly from it to the chain's end, so the stretch ahead of it is still practised and the
    frontier still explored. An episode from the start entry succeeds when it reaches the score of the
    entry BACKWARD_AHEAD further on, or from the last BACKWARD_AHEAD entries `goal` (the score of the
    game's end, e.g. the speedruns' last frames). Once BACKWARD_SUCCESSES of the last BACKWARD_WINDOW
    episodes from it succeeded, or BACKWARD_PATIENCE episodes have started there, the pointer moves
    back one entry and its record starts afresh. Until an episode from the chain's last entry first
    reaches the goal, the pointer follows that entry, so resets explore the frontier. At the first
    entry, the run's initial state, the pointer's episodes are played from power-on.

    The chain is thinned instead of cut from below, so the states the pointer has to walk back to
    stay: when full, the entry whose neighbours are closest in score goes (never the first or last).
    """

    def __init__(self, capacity: int, goal: float):
        if capacity < 3:
            raise ValueError(f"BackwardChain capacity must be >= 3, got {capacity}")
        super().__init__(capacity)
        self.goal = float(goal)
        self.start_score = np.inf  # the start entry is the last one scoring at most this
        self.outcomes: list[bool] = []  # the last episodes' successes from the start entry
        self.tries = 0  # episodes from the start entry since the pointer came to it

    def add(self, state: bytes, score: float, payload=None, key: bytes | None = None) -> bool:
        at = int(np.searchsorted(self.scores, score, side="right"))
        self.states.insert(at, bytes(state))
        self.scores.insert(at, float(score))
        self.payloads.insert(at, payload)
        if len(self.states) > self.capacity:
            drop = most_crowded(self.scores)
            del self.states[drop], self.scores[drop], self.payloads[drop]
        return True

    def start(self) -> int:
        """The start entry's index (0 with an empty chain)."""
        return max(int(np.searchsorted(self.scores, self.start_score, side="right")) - 1, 0)

    def reset_picks(self, rng: np.random.Generator, n: int, pool_prob: float) -> list[int | None]:
        if not self.states or pool_prob <= 0:
            return [None] * n
        start = self.start()
        from_pool = rng.random(n) < pool_prob
        at_start = rng.random(n) < 0.5
        ahead = rng.integers(start, len(self.states), n)
        return [(start if s else int(a)) if use else None for use, s, a in zip(from_pool, at_start, ahead)]

    def record(self, start_score: float, reached: float):
        """An episode that began on the entry scoring `start_score` reached `reached` at best."""
        start = self.start()
        if not self.states or start_score != self.scores[start]:
            return
        ahead = start + BACKWARD_AHEAD
        success = reached >= (self.scores[ahead] if ahead < len(self.scores) else self.goal)
        if self.start_score == np.inf and not success:
            return  # exploring the frontier: the pointer follows the last entry until a success pins it
        self.start_score = self.scores[start]
        self.outcomes = (self.outcomes + [success])[-BACKWARD_WINDOW:]
        self.tries += 1
        if (sum(self.outcomes) >= BACKWARD_SUCCESSES or self.tries >= BACKWARD_PATIENCE) and start > 0:
            self.start_score, self.outcomes, self.tries = self.scores[start - 1], [], 0

    def to_dict(self) -> dict:
        backward = {
            "goal": self.goal,
            "start_score": self.start_score,
            "outcomes": list(self.outcomes),
            "tries": self.tries,
        }
        return super().to_dict() | backward

    @classmethod
    def from_dict(cls, data: dict) -> BackwardChain:
        chain = cls(int(data["capacity"]), float(data["goal"]))
        chain._load_states(data)
        chain.start_score = float(data["start_score"])
        chain.outcomes = [bool(o) for o in data["outcomes"]]
        chain.tries = int(data["tries"])
        return chain
