"""Pictures a trainer leaves beside its checkpoint."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.io import atomic_path


def save_recon_grid(path: Path, originals: np.ndarray, recons: np.ndarray) -> None:
    """Originals (N, H, W, 3) uint8 on the top row, reconstructions (N, H, W, 3) in [0, 1] below, as one
    PNG."""
    recons = np.clip(recons * 255.0 + 0.5, 0, 255).astype(np.uint8)
    grid = np.concatenate(
        [np.concatenate(list(originals), axis=1), np.concatenate(list(recons), axis=1)], axis=0
    )
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
