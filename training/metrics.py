"""One writer for every run's metrics: `metrics.jsonl` and a PNG of the training curves beside it.

Every record names its `stage` ("1a", "1b", "reward", "ppo", "lam", ...), so phases that share
an output folder keep each other's records: starting a stage drops only that stage's earlier
records (all of them for a fresh run, those after the checkpoint on --resume). The PNG shows one
row of panels per stage started by this invocation.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from training.io import atomic_path, atomic_write

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "training_curves.png"


class Panel(NamedTuple):
    """One plot: the record keys drawn against the stage's x key."""

    title: str
    keys: tuple[str, ...]
    log_scale: bool = False


class Curves(NamedTuple):
    """How to draw one stage: its x key (epoch, step, env_steps) and its panels."""

    x: str
    panels: tuple[Panel, ...]


def read_records(path: str | Path) -> list[dict]:
    """Every record of a metrics.jsonl. A last line cut short (a crash mid-write) is skipped with a
    warning; a bad line elsewhere means the file is not a metrics log, and raises ValueError."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{path}: line {number} is not JSON") from None
            warnings.warn(f"{path}: skipped its last line, which was cut short: {line[:60]!r}", stacklevel=2)
    return records


def plot_curves(
    path: str | Path, records: Sequence[dict], curves: dict[str, Curves], title: str | None = None
) -> Path:
    """A PNG with one row of panels per stage of `curves` (in its order) that has records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [stage for stage in curves if any(r.get("stage") == stage for r in records)]
    columns = max((len(curves[stage].panels) for stage in stages), default=1)
    fig, axes = plt.subplots(
        max(len(stages), 1), columns, figsize=(4 * columns, 3 * max(len(stages), 1)), squeeze=False
    )
    for row in axes:
        for ax in row:
            ax.axis("off")
    for row, stage in zip(axes, stages):
        x_key, panels = curves[stage]
        stage_records = [r for r in records if r.get("stage") == stage]
        for ax, panel in zip(row, panels):
            ax.axis("on")
            for key in panel.keys:
                points = [(r[x_key], r[key]) for r in stage_records if r.get(key) is not None and x_key in r]
                if points:
                    ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label=key)
            ax.set_title(f"{stage}: {panel.title}")
            ax.set_xlabel(x_key)
            if panel.log_scale:
                ax.set_yscale("log")
            if ax.lines:  # an eval panel has none before the first evaluation
                ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(path)


class MetricsLog:
    """Appends records to <out_dir>/metrics.jsonl and redraws <out_dir>/training_curves.png after
    the first record, then at most every `redraw_seconds`, and when the `with` block ends (even on
    an interrupt). A matplotlib figure costs ~0.5 s, more than a whole epoch of the reward head."""

    def __init__(self, out_dir: str | Path, curves: dict[str, Curves], redraw_seconds: float = 30.0):
        self.path = Path(out_dir) / METRICS_FILE
        self.curves = curves
        self.redraw_seconds = redraw_seconds
        self.stages: list[str] = []  # started by this invocation: the ones drawn
        self.last_drawn = -float("inf")
        self.unplotted = False

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        if self.unplotted:
            self.plot()

    def start(self, stage: str, after: int | None = None, key: str | None = None) -> None:
        """Begin logging `stage`. Its earlier records are dropped: all of them (after=None, a fresh
        run), or those whose `key` (default: the stage's x key) exceeds `after` (a resumed run, which
        logs them again)."""
        if stage not in self.curves:
            raise ValueError(f"stage {stage!r} has no curves; known: {sorted(self.curves)}")
        self.stages.append(stage)
        if not self.path.is_file():
            return
        key = key or self.curves[stage].x
        kept = [
            r
            for r in read_records(self.path)
            if r.get("stage") != stage or (after is not None and r.get(key, after + 1) <= after)
        ]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        if record.get("stage") not in self.stages:
            raise ValueError(f"record of stage {record.get('stage')!r} before MetricsLog.start of that stage")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.unplotted = True
        if time.monotonic() - self.last_drawn >= self.redraw_seconds:
            self.plot()

    def plot(self) -> None:
        records = read_records(self.path) if self.path.is_file() else []
        plot_curves(
            self.path.with_name(CURVES_FILE), records, {stage: self.curves[stage] for stage in self.stages}
        )
        self.last_drawn, self.unplotted = time.monotonic(), False
