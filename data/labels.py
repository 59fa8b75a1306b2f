"""Labeled spans of valid frames, and the video reading they need.

A label file is `labeled_frames/<video stem>.json`: a JSON list of lists of frame
indices of the source video, one list per valid chunk, every index inside the chunk
written out, e.g. `[[120, 121, ..., 480], [900, ..., 1500]]`. The labeler
(`data/labeler.py`) writes these files and `data/extract_frames.py --labels` reads them.

Everything here is plain Python + OpenCV, so it can be tested without Streamlit.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# FFmpeg would print its own complaint about a non-video file beside our one-line error.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (after the log level, which FFmpeg reads when OpenCV first opens a video)
import numpy as np  # noqa: E402

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frame_count: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video for reading. Raises ValueError with one readable line on bad input."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise ValueError(f"{path} is not a readable video (OpenCV could not decode a frame)")
    frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if frame_count <= 0:  # some containers (e.g. streamed webm) do not say: count once
        frame_count = 1
        while capture.grab():
            frame_count += 1
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    fps = capture.get(cv2.CAP_PROP_FPS)
    info = VideoInfo(
        path=path,
        frame_count=frame_count,
        # Some containers report no rate; 60 is the Game Boy's (59.73) rounded.
        fps=fps if fps > 0 else 60.0,
        width=first.shape[1],
        height=first.shape[0],
    )
    return capture, info


def read_window(
    path: Path, start_frame: int, num_frames: int, step: int = 1, thumb_width: int | None = None
) -> tuple[list[int], list[np.ndarray]]:
    """Read frames start_frame, start_frame+step, ... (num_frames source frames in all)
    without touching the rest of the video: one seek, then sequential grabs.

    Returns (frame indices, RGB uint8 images (H, W, 3)), optionally shrunk to thumb_width.
    """
    capture, info = open_video(path)
    try:
        start_frame = max(0, min(start_frame, info.frame_count - 1))
        end_frame = min(start_frame + num_frames, info.frame_count)
        capture.set(cv2.CAP_PROP_POS_FRAMES, start_frame)
        indices, images = [], []
        for index in range(start_frame, end_frame):
            # grab() decodes without the colour conversion; retrieve() only what we keep.
            if not capture.grab():
                break
            if (index - start_frame) % step:
                continue
            ok, frame = capture.retrieve()
            if not ok:
                break
            if thumb_width is not None and frame.shape[1] != thumb_width:
                thumb_height = round(frame.shape[0] * thumb_width / frame.shape[1])
                frame = cv2.resize(frame, (thumb_width, thumb_height), interpolation=cv2.INTER_AREA)
            indices.append(index)
            images.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        return indices, images
    finally:
        capture.release()


def span_to_indices(start: int, end: int) -> list[int]:
    """Inclusive span [start, end] of frame indices, in either order."""
    low, high = sorted((int(start), int(end)))
    return list(range(low, high + 1))


def spans_from_chunks(chunks: list[list[int]]) -> list[tuple[int, int]]:
    """(start, end) of each saved chunk, for showing a label file again."""
    return [(min(chunk), max(chunk)) for chunk in chunks if chunk]


def normalize_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort spans and merge those that overlap or touch, so no frame is listed twice."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(tuple(sorted(span)) for span in spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def label_path(labels_dir: Path, video: Path) -> Path:
    return Path(labels_dir) / f"{Path(video).stem}.json"


def save_labels(labels_dir: Path, video: Path, spans: list[tuple[int, int]]) -> Path:
    """Write the spans as chunks of frame indices, atomically (a Ctrl-C leaves the old file)."""
    labels_dir = Path(labels_dir)
    labels_dir.mkdir(parents=True, exist_ok=True)
    chunks = [span_to_indices(start, end) for start, end in normalize_spans(spans)]
    target = label_path(labels_dir, video)
    handle, temp_name = tempfile.mkstemp(dir=labels_dir, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(chunks, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def load_labels(labels_dir: Path, video: Path) -> list[list[int]] | None:
    """Chunks of frame indices saved for this video, or None when it has no label file.
    Raises ValueError when the file is not a list of lists of non-negative integers."""
    path = label_path(labels_dir, video)
    if not path.is_file():
        return None
    try:
        chunks = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(chunks, list) or not all(
        isinstance(chunk, list) and all(isinstance(i, int) and i >= 0 for i in chunk) for chunk in chunks
    ):
        raise ValueError(f"{path} must be a list of lists of frame indices (non-negative integers)")
    return chunks
