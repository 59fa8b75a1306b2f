"""Video → frames: screen detection with borders and overlays, sampling, dedupe, label
filtering, and one-line errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.extract_frames import Args, detect_screen, main, parse_crop

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "extract_frames.py"
PALETTE = np.array([[15, 56, 15], [48, 98, 48], [139, 172, 15], [155, 188, 15]], np.uint8)  # BGR
FPS = 60
# Where the 3x-scaled screen sits in the bordered video, and its size.
SCREEN_BOX = (100, 30, 480, 432)


def game_frames(count: int, seed: int = 0) -> np.ndarray:
    """(count, 144, 160, 3) BGR frames that look like a Game Boy game: a 16 px tile map in
    four greens that scrolls, changes palette every 40 frames, and a white sprite walking."""
    tiles = np.random.default_rng(seed).integers(0, 4, (20, 20))
    frames = []
    for t in range(count):
        tile_index = np.kron(np.roll(tiles, t // 4, axis=1), np.ones((16, 16), int))[:144, :160]
        frame = PALETTE[(tile_index + t // 40) % 4].copy()
        x = (t * 3) % 144
        frame[60:76, x : x + 16] = 255
        frames.append(frame)
    return np.stack(frames)


def write_video(path: Path, frames: np.ndarray, bordered: bool = False) -> Path:
    """mp4v video of the frames; bordered puts them 3x (nearest) on a 640x480 purple canvas
    with a static logo and a running timer that touches the screen's corner."""
    size = (640, 480) if bordered else (160, 144)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    for t, frame in enumerate(frames):
        if bordered:
            canvas = np.full((480, 640, 3), (60, 20, 40), np.uint8)
            x, y, w, h = SCREEN_BOX
            canvas[y : y + h, x : x + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_NEAREST)
            cv2.putText(canvas, "LOGO", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
            cv2.putText(canvas, f"{t / FPS:05.2f}", (580, 470), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
            frame = canvas
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    frames = game_frames(240)
    write_video(folder / "plain.mp4", frames)
    write_video(folder / "bordered.mp4", frames, bordered=True)
    return folder, frames


def extracted(out: Path, stem: str) -> tuple[dict, np.ndarray]:
    metadata = json.loads((out / stem / "metadata.json").read_text())
    images = np.stack([cv2.imread(str(out / stem / record["file"])) for record in metadata["frames"]])
    return metadata, images


def test_recovers_frames_through_border_and_overlays(videos, tmp_path):
    folder, truth = videos
    assert main(Args(video=folder, out=str(tmp_path), dedupe="none")) == 2 * len(truth)
    for stem in ("plain", "bordered"):
        metadata, images = extracted(tmp_path, stem)
        crop = metadata["crop"]
        assert crop["source"] == "auto"
        expected_box = (0, 0, 160, 144) if stem == "plain" else SCREEN_BOX
        assert np.abs(np.subtract((crop["x"], crop["y"], crop["w"], crop["h"]), expected_box)).max() <= 2, crop
        assert images.shape == (len(truth), 144, 160, 3)
        assert [r["source_frame"] for r in metadata["frames"]] == list(range(len(truth)))
        error = np.abs(images.astype(np.float32) - truth).mean()
        assert error < 4.0, f"{stem}: mean abs error {error:.2f} against the frames written to the video"


def test_manual_crop_and_sampling_rate(videos, tmp_path):
    folder, truth = videos
    x, y, w, h = SCREEN_BOX
    main(Args(video=folder / "bordered.mp4", out=str(tmp_path), fps=10, crop=f"{x},{y},{w},{h}", dedupe="none"))
    metadata, images = extracted(tmp_path, "bordered")
    assert metadata["crop"] == {"x": x, "y": y, "w": w, "h": h, "source": "manual"}
    sources = [r["source_frame"] for r in metadata["frames"]]
    assert sources == list(range(0, len(truth), 6))  # 60 fps video at 10 fps
    assert [r["time_s"] for r in metadata["frames"][:3]] == [0.0, 0.1, 0.2]
    assert np.abs(images.astype(np.float32) - truth[sources]).mean() < 4.0

    main(Args(video=folder / "plain.mp4", out=str(tmp_path), jump_seconds=0.25, dedupe="none"))
    metadata, _ = extracted(tmp_path, "plain")
    assert [r["source_frame"] for r in metadata["frames"]] == list(range(0, len(truth), 15))


def test_detect_screen_ignores_static_border(videos):
    _, truth = videos
    canvas = np.zeros((len(truth[::8]), 300, 400, 3), np.uint8)
    canvas[:, 50:194, 120:280] = truth[::8]
    canvas[:, 10:30, 10:100] = 255  # static overlay: bright but never changing
    assert detect_screen(canvas) == parse_crop("120,50,160,144")
    # A screen whose top tile row never changes is still found whole.
    still_top = truth[::8].copy()
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


def test_labels_keep_only_labeled_frames(videos, tmp_path):
    folder, _ = videos
    labels = tmp_path / "labeled_frames"
    labels.mkdir()
    (labels / "plain.json").write_text(json.dumps([list(range(10, 21)), list(range(100, 131))]))
    out = tmp_path / "frames"
    main(Args(video=folder, out=str(out), labels=labels, fps=20, dedupe="none"))
    metadata, _ = extracted(out, "plain")
    assert [(r["source_frame"], r["segment"]) for r in metadata["frames"]] == [
        *[(i, 0) for i in (12, 15, 18)],
        *[(i, 1) for i in range(102, 131, 3)],
    ]
    assert not (out / "bordered").exists()  # no label file: skipped
    with pytest.raises(SystemExit, match="no label file for bordered.mp4"):
        main(Args(video=folder / "bordered.mp4", out=str(out), labels=labels))


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--video", "{missing}"], "does not exist"),
        (["--video", "{not_video}"], "not a readable video"),
        (["--video", "{plain}", "--out", ""], "--out is empty"),
        (["--video", "{plain}", "--crop", "10,10,100"], "--crop"),
        (["--video", "{plain}", "--crop", "0,0,500,500"], "falls outside"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(videos, tmp_path, arguments, message):
    folder, _ = videos
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    paths = {"missing": tmp_path / "missing.mp4", "not_video": not_video, "plain": folder / "plain.mp4"}
    arguments = [a.format(**paths) for a in arguments]
    if "--out" not in arguments:
        arguments += ["--out", str(tmp_path / "out")]
    result = run_cli(*arguments)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
