"""Parallel video extraction: data/extract_frames.py --workers N against --workers 1, in one run.

    uv run python bench/extract_workers.py
    uv run python bench/extract_workers.py --videos my_videos/ --fps 15

Extracts the same videos (default: --num-videos scripted EmuQuest speedrun mp4s, written first)
with each --worker-counts, interleaved, --repeats times, and reports the best wall time of each
and its speedup over one worker. Every worker count must write the same PNG bytes and metadata
frames as one worker. The target is >= 1.6x with 2 workers on 2 cores.

Each run is an `extract_frames.py` command in its own process, as a user runs it, so the time
includes starting it and its workers. `--scratch` puts the frames on the disk to measure (e.g.
where a dataset will live); writing thousands of small PNGs is part of the work.

Prints a markdown table and writes it to --output (atomically).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from bench.tables import machine, publish
from data import extract_frames, make_speedruns
from data.labels import VIDEO_SUFFIXES


@dataclass
class Args:
    videos: Path | None = None
    """Folder of videos to extract. Default: --num-videos EmuQuest speedruns, made first."""
    num_videos: int = 4
    """Scripted speedrun videos to make when --videos is not given."""
    worker_counts: tuple[int, ...] = (1, 2)
    """--workers values to time; the first is the baseline of the speedups."""
    fps: float | None = None
    """--fps of the extraction (default: every frame, which makes decoding the work)."""
    repeats: int = 2
    """Timed runs of each worker count, interleaved; the best counts."""
    scratch: Path | None = None
    """Folder the frames (and the made videos) are written under, in a temporary folder deleted at the
    end. Default: the system's temporary folder."""
    output: Path = Path("bench/results/extract_workers.md")


def output_digest(folder: Path) -> str:
    """A hash of every PNG's bytes and every run's metadata frames: equal digests, equal datasets."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".png":
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
        elif path.name == "metadata.json":
            digest.update(path.read_text().split('"frames"', 1)[1].encode())
    return digest.hexdigest()


def timed_extraction(videos: Path, out: Path, workers: int, fps: float | None) -> tuple[float, int]:
    """(seconds, frames kept) of one extract_frames.py command, run as a user runs it: its own process,
    whose start (and its workers' imports) the time includes."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, extract_frames.__file__, "--video", str(videos), "--out", str(out)]
    command += ["--workers", str(workers), *([] if fps is None else ["--fps", str(fps)])]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: {result.stderr.strip().splitlines()[-1]}")
    kept = sum(len(json.loads(m.read_text())["frames"]) for m in out.glob("*/metadata.json"))
    return seconds, kept


def main(args: Args) -> str:
    if not args.worker_counts or min(args.worker_counts) < 1 or args.repeats < 1:
        raise SystemExit("error: --worker-counts must be positive and --repeats at least 1")
    if args.videos is not None and not args.videos.is_dir():
        raise SystemExit(f"error: --videos {args.videos}: not a folder")
    if args.scratch is not None and not args.scratch.is_dir():
        raise SystemExit(f"error: --scratch {args.scratch}: not a folder")
    with tempfile.TemporaryDirectory(prefix="extract_workers_", dir=args.scratch) as scratch:
        scratch = Path(scratch)
        videos = args.videos
        if videos is None:
            print(f"making {args.num_videos} EmuQuest speedrun videos")
            make_speedruns.main(make_speedruns.Args(num_runs=args.num_videos, out=scratch / "speedruns"))
            videos = scratch / "speedruns" / "videos"
        num_videos = sum(1 for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        best: dict[int, float] = {}
        kept: dict[int, int] = {}
        digests: dict[int, str] = {}
        for repeat in range(args.repeats):
            for workers in args.worker_counts:
                out = scratch / f"frames_{workers}"
                seconds, kept[workers] = timed_extraction(videos, out, workers, args.fps)
                best[workers] = min(best.get(workers, seconds), seconds)
                digests[workers] = output_digest(out)
                print(f"repeat {repeat + 1}/{args.repeats}: {workers} worker(s) {seconds:.1f} s")

    baseline = args.worker_counts[0]
    rows = []
    for workers in args.worker_counts:
        same = "yes" if digests[workers] == digests[baseline] else "NO"
        rows.append(
            f"| {workers} | {num_videos} | {kept[workers]:,} | {best[workers]:.1f} | "
            f"{best[baseline] / best[workers]:.2f}x | {same} |"
        )
    return publish(
        args.output,
        [
            f"# Parallel video extraction ({datetime.date.today()})",
            "",
            f"Machine: {machine()}. Videos: {args.videos or f'{num_videos} EmuQuest speedrun mp4s'}, "
            f"{'every frame' if args.fps is None else f'{args.fps:g} fps'}, written under "
            f"{args.scratch or tempfile.gettempdir()}; best of {args.repeats} interleaved runs. "
            "Target: >= 1.6x with 2 workers on 2 cores.",
            "",
            f"| workers | videos | frames kept | best s | speedup vs {baseline} "
            f"| same output as {baseline} |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ],
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
