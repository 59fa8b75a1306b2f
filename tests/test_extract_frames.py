"""Video → frames on a real EmuQuest speedrun (data/make_speedruns.py): screen detection
through a border and overlays, sampling, dedupe, label filtering, one-line errors."""

import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import make_speedruns
from data.extract_frames import Args, detect_screen, main, parse_crop

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "extract_frames.py"
FPS = 60
# Where the 2x-scaled screen sits in the bordered copy of the speedrun video, and its size.
CANVAS_SIZE = (416, 336)
SCREEN_BOX = (48, 24, 320, 288)
BORDERED_FRAMES = 1200  # 20 s: title, intro, house and town, enough to find the screen


def game_frames(count: int, seed: int = 0) -> np.ndarray:
    """(count, 144, 160, 3) BGR synthetic frames: a 16 px tile map in four greens that
    scrolls one column every 4 frames and changes palette every 40, a white sprite walking."""
    palette = np.array([[15, 56, 15], [48, 98, 48], [139, 172, 15], [155, 188, 15]], np.uint8)
    tiles = np.random.default_rng(seed).integers(0, 4, (20, 20))
    frames = []
    for t in range(count):
        tile_index = np.kron(np.roll(tiles, t // 4, axis=1), np.ones((16, 16), int))[:144, :160]
        frame = palette[(tile_index + t // 40) % 4].copy()
        x = (t * 3) % 144
        frame[60:76, x : x + 16] = 255
        frames.append(frame)
    return np.stack(frames)


def write_video(path: Path, frames, bordered: bool = False, fourcc: str = "mp4v") -> Path:
    """A video of BGR frames; bordered puts them 2x (nearest) on a larger purple canvas with
    a static logo and a running timer just under the screen's corner."""
    size = CANVAS_SIZE if bordered else (160, 144)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, size)
    for t, frame in enumerate(frames):
        if bordered:
            canvas = np.full((*CANVAS_SIZE[::-1], 3), (60, 20, 40), np.uint8)
            x, y, w, h = SCREEN_BOX
            canvas[y : y + h, x : x + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_NEAREST)
            cv2.putText(canvas, "LOGO", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
            cv2.putText(
                canvas, f"{t / FPS:05.2f}", (350, 328), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1
            )
            frame = canvas
        writer.write(frame)
    writer.release()
    return path


def decoded(path: Path):
    capture = cv2.VideoCapture(str(path))
    while (frame := capture.read())[0]:
        yield frame[1]
    capture.release()


@pytest.fixture(scope="module")
def speedrun(tmp_path_factory):
    """One scripted run: its PNGs (every 4th frame) with metadata, its mp4 (every frame), and a
    second-generation copy of the mp4's first BORDERED_FRAMES inside a border with overlays."""
    root = tmp_path_factory.mktemp("speedrun")
    make_speedruns.main(make_speedruns.Args(num_runs=1, out=root))
    videos = root / "videos"
    write_video(
        videos / "bordered.mp4", islice(decoded(videos / "run_00.mp4"), BORDERED_FRAMES), bordered=True
    )
    metadata = json.loads((root / "frames" / "run_00" / "metadata.json").read_text())
    pngs = {r["frame"]: cv2.imread(str(root / "frames" / "run_00" / r["file"])) for r in metadata["frames"]}
    return videos, pngs, metadata["num_frames"]


def extracted(out: Path, stem: str) -> tuple[dict, np.ndarray]:
    metadata = json.loads((out / stem / "metadata.json").read_text())
    images = np.stack([cv2.imread(str(out / stem / record["file"])) for record in metadata["frames"]])
    return metadata, images


def error_against_pngs(metadata: dict, images: np.ndarray, pngs: dict) -> float:
    """Mean abs error of the extracted frames that the speedrun also saved as PNGs."""
    pairs = [
        (image, pngs[r["source_frame"]])
        for r, image in zip(metadata["frames"], images)
        if r["source_frame"] in pngs
    ]
    assert len(pairs) > 100
    return float(np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in pairs]))


def test_recovers_speedrun_frames_through_border_and_overlays(speedrun, tmp_path):
    videos, pngs, num_frames = speedrun
    assert main(Args(video=videos, out=str(tmp_path), dedupe="none")) == num_frames + BORDERED_FRAMES
    for stem, expected_box, length, max_error in [
        ("run_00", (0, 0, 160, 144), num_frames, 5.0),
        ("bordered", SCREEN_BOX, BORDERED_FRAMES, 8.0),
    ]:
        metadata, images = extracted(tmp_path, stem)
        crop = metadata["crop"]
        assert crop["source"] == "auto"
        assert np.abs(np.subtract((crop["x"], crop["y"], crop["w"], crop["h"]), expected_box)).max() <= 2, (
            crop
        )
        assert images.shape == (length, 144, 160, 3)
        assert [r["source_frame"] for r in metadata["frames"]] == list(range(length))
        error = error_against_pngs(metadata, images, pngs)
        assert error < max_error, f"{stem}: mean abs error {error:.2f} against the emulator's PNGs"


def test_manual_crop_and_sampling_rate(speedrun, tmp_path):
    videos, pngs, num_frames = speedrun
    x, y, w, h = SCREEN_BOX
    main(
        Args(video=videos / "bordered.mp4", out=str(tmp_path), fps=15, crop=f"{x},{y},{w},{h}", dedupe="none")
    )
    metadata, images = extracted(tmp_path, "bordered")
    assert metadata["crop"] == {"x": x, "y": y, "w": w, "h": h, "source": "manual"}
    # 15 fps of a 60 fps video: exactly the frames the speedrun saved as PNGs (every 4th).
    assert [r["source_frame"] for r in metadata["frames"]] == sorted(pngs)[: BORDERED_FRAMES // 4]
    assert sorted(pngs) == list(range(0, num_frames, 4))
    assert [r["time_s"] for r in metadata["frames"][:3]] == [0.0, 0.0667, 0.1333]
    assert error_against_pngs(metadata, images, pngs) < 8.0

    main(Args(video=videos / "run_00.mp4", out=str(tmp_path), jump_seconds=0.25, dedupe="none"))
    metadata, _ = extracted(tmp_path, "run_00")
    assert [r["source_frame"] for r in metadata["frames"]] == list(range(0, num_frames, 15))


def test_workers_give_the_same_output_and_a_summary(speedrun, tmp_path, capsys):
    videos, _, _ = speedrun
    for workers in (1, 2):
        main(Args(video=videos, out=str(tmp_path / f"workers_{workers}"), fps=15, workers=workers))
    summary = capsys.readouterr().out
    for stem in ("bordered", "run_00"):
        one, two = tmp_path / "workers_1" / stem, tmp_path / "workers_2" / stem
        assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
        for png in one.glob("*.png"):
            assert png.read_bytes() == (two / png.name).read_bytes(), png.name
        first, second = (json.loads((d / "metadata.json").read_text()) for d in (one, two))
        assert first["frames"] == second["frames"] and first["crop"] == second["crop"]
    # One line per video (kept, read, duplicates, crop, time) and a total, for each run.
    assert summary.count("bordered.mp4: ") == 2 and summary.count("run_00.mp4: ") == 2
    assert "with 2 worker(s)" in summary and summary.count(" (auto), ") == 4
    metadata = json.loads((tmp_path / "workers_2" / "run_00" / "metadata.json").read_text())
    kept_line = f"run_00.mp4: {len(metadata['frames'])} frames kept of {metadata['source_frame_count']}, "
    assert kept_line in summary


def test_detect_screen_ignores_static_border(speedrun):
    _, pngs, _ = speedrun
    frames = np.stack(list(pngs.values())[::8])
    canvas = np.zeros((len(frames), 300, 400, 3), np.uint8)
    canvas[:, 50:194, 120:280] = frames
    canvas[:, 10:30, 10:100] = 255  # static overlay: bright but never changing
    assert detect_screen(canvas) == parse_crop("120,50,160,144")
    # A screen whose top tile row never changes is still found whole.
    still_top = frames.copy()
    still_top[:, :16] = 0
    assert detect_screen(still_top) == parse_crop("0,0,160,144")


def test_dedupe_exact_and_near(tmp_path):
    # 40 distinct frames (a tile column apart), each held for 3 frames, and the last copy of
    # each nudged by one level on a 20x20 patch: exact dedupe keeps the nudged copies, near
    # dedupe drops them. FFV1 is lossless, so repeats decode exactly equal.
    held = np.repeat(game_frames(160)[::4], 3, axis=0)
    held[2::3, :20, :20] += 1
    writer = cv2.VideoWriter(str(tmp_path / "held.avi"), cv2.VideoWriter_fourcc(*"FFV1"), FPS, (160, 144))
    for frame in held:
        writer.write(frame)
    writer.release()
    for mode, expected in [("none", 120), ("exact", 80), ("near", 40)]:
        main(Args(video=tmp_path / "held.avi", out=str(tmp_path / mode), dedupe=mode, near_threshold=1.0))
        metadata, _ = extracted(tmp_path / mode, "held")
        assert len(metadata["frames"]) == expected, mode
    assert [r["source_frame"] for r in metadata["frames"]] == list(range(0, 120, 3))

    # A lossy mp4 decodes held frames slightly differently; near dedupe still drops them.
    write_video(tmp_path / "held.mp4", held)
    main(Args(video=tmp_path / "held.mp4", out=str(tmp_path / "mp4"), dedupe="near", near_threshold=1.0))
    metadata, _ = extracted(tmp_path / "mp4", "held")
    assert [r["source_frame"] for r in metadata["frames"]] == list(range(0, 120, 3))


def test_exact_dedupe_on_speedrun_frames(speedrun, tmp_path):
    # The whole run's PNGs in a lossless video: exact dedupe keeps a frame iff it differs from
    # the one before. Waits repeat frames, and the end screen, held 90 frames, always does.
    _, pngs, _ = speedrun
    frames = np.stack([pngs[frame] for frame in sorted(pngs)])
    changed = np.flatnonzero(np.any(frames[1:] != frames[:-1], axis=(1, 2, 3))) + 1
    write_video(tmp_path / "saved.avi", frames, fourcc="FFV1")
    main(Args(video=tmp_path / "saved.avi", out=str(tmp_path), dedupe="exact"))
    metadata, images = extracted(tmp_path, "saved")
    assert [r["source_frame"] for r in metadata["frames"]] == [0, *changed.tolist()]
    assert len(changed) < len(frames) - 20  # the run has repeats to drop
    np.testing.assert_array_equal(images, frames[[0, *changed]])


def test_labels_keep_only_labeled_frames(speedrun, tmp_path):
    folder, _, _ = speedrun
    labels = tmp_path / "labeled_frames"
    labels.mkdir()
    (labels / "run_00.json").write_text(json.dumps([list(range(10, 21)), list(range(100, 131))]))
    out = tmp_path / "frames"
    main(Args(video=folder, out=str(out), labels=labels, fps=20, dedupe="none"))
    metadata, _ = extracted(out, "run_00")
    assert [(r["source_frame"], r["segment"]) for r in metadata["frames"]] == [
        *[(i, 0) for i in (12, 15, 18)],
        *[(i, 1) for i in range(102, 131, 3)],
    ]
    assert not (out / "bordered").exists()  # no label file: skipped
    with pytest.raises(SystemExit, match="no label file for bordered.mp4"):
        main(Args(video=folder / "bordered.mp4", out=str(out), labels=labels))


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--video", "{missing}"], "does not exist"),
        (["--video", "{not_video}"], "not a readable video"),
        (["--video", "{plain}", "--out", ""], "--out is empty"),
        (["--video", "{plain}", "--crop", "10,10,100"], "--crop"),
        (["--video", "{plain}", "--crop", "0,0,500,500"], "falls outside"),
        (["--video", "{plain}", "--workers", "0"], "--workers 0"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(speedrun, tmp_path, arguments, message):
    folder, _, _ = speedrun
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    paths = {"missing": tmp_path / "missing.mp4", "not_video": not_video, "plain": folder / "run_00.mp4"}
    arguments = [a.format(**paths) for a in arguments]
    if "--out" not in arguments:
        arguments += ["--out", str(tmp_path / "out")]
    result = run_cli(*arguments)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_the_workers_bench_times_each_count_and_checks_the_output_is_the_same(speedrun, tmp_path):
    videos, _, _ = speedrun
    output = tmp_path / "extract_workers.md"
    result = run_bench(videos, output)
    assert result.returncode == 0, result.stderr
    table = output.read_text()
    assert "| 1 | 2 | " in table and "| 2 | 2 | " in table and table.count(" | yes |") == 2
    assert "1.00x" in table and f"15 fps, written under {tmp_path};" in table and "Machine: " in table


def run_bench(videos: Path, output: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "bench/extract_workers.py", "--videos", str(videos), "--fps", "15"]
    command += ["--repeats", "1", "--output", str(output), "--scratch", str(output.parent)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
