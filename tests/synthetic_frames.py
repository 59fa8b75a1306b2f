"""Small synthetic speedruns for tests: a coloured square walks across a background whose
colour drifts with time, so frame order is learnable and consecutive frames mostly match."""

from pathlib import Path

import cv2
import numpy as np


def write_synthetic_runs(
    root: Path, num_runs: int = 3, frames_per_run: int = 40, hw: tuple[int, int] = (144, 160), seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    height, width = hw
    for run in range(num_runs):
        run_dir = root / f"run_{run:02d}"
        run_dir.mkdir(parents=True)
        jitter = rng.integers(0, 16)  # runs differ a little, like the speedruns' detours
        for t in range(frames_per_run):
            progress = t / max(frames_per_run - 1, 1)
            frame = np.full((height, width, 3), (40 + 180 * progress, 200 - 150 * progress, 90), np.uint8)
            x = int(8 + progress * (width - 40)) + jitter % 8
            y = int(16 + 32 * run + jitter) % (height - 32)
            frame[y : y + 24, x : x + 24] = (250, 230, 40)
            cv2.imwrite(str(run_dir / f"{t:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return root
