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
dropped if it scores below all of them: the pool drifts toward the frontier.

Each state may carry a payload, whatever the trainer must restore with it (PPO keeps the
reward's bag of seen tokens there); VecGameBoy reports which pool entry each reset loaded.

Everything is plain data (bytes, floats, payloads), so `to_dict()` can go straight into a
checkpoint and `from_dict()` restores it for --resume.
"""

from __future__ import annotations

import numpy as np


class CurriculumPool:
    def __init__(self, capacity: int = 64, temperature: float = 1.0):
        if capacity < 1:
            raise ValueError(f"CurriculumPool capacity must be >= 1, got {capacity}")
        if not temperature > 0:
            raise ValueError(f"CurriculumPool temperature must be > 0, got {temperature}")
        self.capacity = capacity
        self.temperature = temperature
        self.states: list[bytes] = []
        self.scores: list[float] = []
        self.payloads: list = []  # per state, whatever `add` was given with it (None: nothing)

    def __len__(self) -> int:
        return len(self.states)

    def add(self, state: bytes, score: float, payload=None, key: bytes | None = None) -> bool:
        """Store a state (and its payload); returns False when the pool is full and every state scores
        higher. `key` names a CellArchive's cell; this pool has none and ignores it."""
        if len(self.states) < self.capacity:
            self.states.append(bytes(state))
            self.scores.append(float(score))
            self.payloads.append(payload)
            return True
        worst = int(np.argmin(self.scores))  # argmin takes the first, i.e. the oldest, among ties
        if score < self.scores[worst]:
            return False
        # Drop the worst and append, so list order stays oldest-first for tie-breaking.
        del self.states[worst], self.scores[worst], self.payloads[worst]
        self.states.append(bytes(state))
        self.scores.append(float(score))
        self.payloads.append(payload)
        return True

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
        return {
            "capacity": self.capacity,
            "temperature": self.temperature,
            "states": list(self.states),
            "scores": list(self.scores),
            "payloads": list(self.payloads),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CurriculumPool:
        pool = cls(capacity=int(data["capacity"]), temperature=float(data["temperature"]))
        payloads = data.get("payloads", data["states"])
        if (
            not len(data["states"]) == len(data["scores"]) == len(payloads)
            or len(data["states"]) > pool.capacity
        ):
            raise ValueError(
                "CurriculumPool.from_dict: states, scores and payloads disagree with each other "
                "or the capacity"
            )
        pool.states = [bytes(s) for s in data["states"]]
        pool.scores = [float(s) for s in data["scores"]]
        pool.payloads = list(data.get("payloads", [None] * len(pool.states)))
        return pool
