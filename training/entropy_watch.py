"""Is the policy still uniform? Entropy as a fraction of its maximum, with a warning when it stays high."""

from __future__ import annotations

import math


class EntropyWatch:
    """Entropy as a fraction of its maximum log(num_actions); warns once per streak when
    it stays above `threshold` for `patience` iterations (the seed sat at 99.9%)."""

    def __init__(self, num_actions: int, patience: int, threshold: float = 0.99):
        self.max_entropy = math.log(num_actions)
        self.patience = patience
        self.threshold = threshold
        self.streak = 0  # consecutive iterations above threshold

    def __call__(self, entropy: float) -> tuple[float, str | None]:
        fraction = entropy / self.max_entropy
        self.streak = self.streak + 1 if fraction > self.threshold else 0
        warning = None
        if self.streak == self.patience:
            warning = (
                f"warning: policy entropy has stayed above {self.threshold:.0%} of its maximum for "
                f"{self.patience} iterations (the policy is still uniform): check the reward "
                f"scale (--reward-scale) or lower --ent-coef"
            )
        return fraction, warning
