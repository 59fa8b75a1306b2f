"""Label the valid stretches of a speedrun video (gameplay, not menus, ads or cuts).

    uv run streamlit run data/labeler.py
    uv run streamlit run data/labeler.py -- --video data/speedruns/videos/run_00.mp4

(or open http://localhost:8501/?video=path/to/run.mp4). Pick a video, page through it
window by window (thumbnails at 5 per second of video; only that window is decoded),
mark start and end frames, add spans, then save. The file is
`labeled_frames/<video stem>.json`: one list of frame indices per span. Reopening the
video shows its saved spans. `data/extract_frames.py --labels labeled_frames/` keeps
only those frames. The logic lives in data/labels.py, testable without Streamlit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import streamlit as st

from data.labels import (
    VIDEO_SUFFIXES,
    label_path,
    load_labels,
    normalize_spans,
    open_video,
    read_window,
    save_labels,
    spans_from_chunks,
)

THUMBS_PER_SECOND = 5
THUMB_WIDTH = 120
THUMBS_PER_ROW = 10
DEFAULT_FOLDER = "data/speedruns/videos"
IN_SPAN_COLOUR = (40, 200, 60)  # RGB border on thumbnails inside a span


@st.cache_data(max_entries=4)
def video_facts(path: str, modified: float) -> tuple[int, float]:
    """(frame count, fps); `modified` makes a rewritten file be read again."""
    capture, info = open_video(Path(path))
    capture.release()
    return info.frame_count, info.fps


@st.cache_data(max_entries=16)
def window_thumbnails(
    path: str, modified: float, start: int, length: int, step: int
) -> tuple[list[int], list[np.ndarray]]:
    return read_window(Path(path), start, length, step=step, thumb_width=THUMB_WIDTH)


def outlined(image: np.ndarray) -> np.ndarray:
    image = image.copy()
    cv2.rectangle(image, (0, 0), (image.shape[1] - 1, image.shape[0] - 1), IN_SPAN_COLOUR, thickness=4)
    return image


def video_from_command_line() -> str:
    """`--video PATH` after `streamlit run data/labeler.py --`, else the `?video=` URL parameter."""
    if "--video" in sys.argv[:-1]:
        return sys.argv[sys.argv.index("--video") + 1]
    return st.query_params.get("video", "")


def set_value(key: str, value: int) -> None:
    st.session_state[key] = value


def add_span() -> None:
    span = (st.session_state.span_start, st.session_state.span_end)
    st.session_state.spans = normalize_spans([*st.session_state.spans, span])


def delete_span(number: int) -> None:
    del st.session_state.spans[number]


def change_window(delta: int, last: int) -> None:
    st.session_state.window = min(max(st.session_state.window + delta, 0), last)


st.set_page_config(page_title="EmuRL labeler", layout="wide")
st.title("EmuRL labeler: valid frame spans")

with st.sidebar:
    folder = st.text_input("Video folder", DEFAULT_FOLDER, key="folder")
    in_folder = (
        sorted(p.name for p in Path(folder).glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if Path(folder).is_dir()
        else []
    )
    picked = st.selectbox("Video in folder", in_folder, index=0 if in_folder else None, key="picked")
    typed = st.text_input("…or a video path", video_from_command_line(), key="video_path")
    labels_dir = Path(st.text_input("Labels folder", "labeled_frames", key="labels_dir"))
    window_seconds = st.number_input("Window (seconds of video)", 2, 600, 10, key="window_seconds")

video = Path(typed) if typed.strip() else (Path(folder) / picked if picked else None)
if video is None:
    st.info(f"No video: type a path in the sidebar, or put .mp4 files in the folder ({folder}).")
    st.stop()
try:
    frame_count, fps = video_facts(str(video), video.stat().st_mtime if video.is_file() else 0.0)
except ValueError as error:
    st.error(str(error))
    st.stop()

# A new video (or labels folder) starts from what was saved for it.
if st.session_state.get("spans_of") != (str(video), str(labels_dir)):
    try:
        chunks = load_labels(labels_dir, video) or []
    except ValueError as error:
        st.error(f"{error}; starting with no spans")
        chunks = []
    st.session_state.spans = spans_from_chunks(chunks)
    st.session_state.spans_of = (str(video), str(labels_dir))
    st.session_state.window = 0
    st.session_state.span_start = 0
    st.session_state.span_end = frame_count - 1

window_frames = int(round(window_seconds * fps))
last_window = max(0, (frame_count - 1) // window_frames)
st.session_state.window = min(st.session_state.get("window", 0), last_window)
st.caption(
    f"{video} · {frame_count} frames · {fps:.2f} fps · {frame_count / fps:.1f} s · window {window_seconds} s"
)

previous, slider, following = st.columns([1, 8, 1], vertical_alignment="bottom")
previous.button(
    "◀ prev",
    key="prev_window",
    on_click=change_window,
    args=(-1, last_window),
    disabled=st.session_state.window == 0,
)
following.button(
    "next ▶",
    key="next_window",
    on_click=change_window,
    args=(1, last_window),
    disabled=st.session_state.window == last_window,
)
if last_window > 0:
    slider.slider("Window", 0, last_window, key="window")

start = st.session_state.window * window_frames
step = max(1, round(fps / THUMBS_PER_SECOND))
indices, thumbs = window_thumbnails(str(video), video.stat().st_mtime, start, window_frames, step)
spans = st.session_state.spans
for row in range(0, len(indices), THUMBS_PER_ROW):
    for column, index, thumb in zip(
        st.columns(THUMBS_PER_ROW), indices[row : row + THUMBS_PER_ROW], thumbs[row : row + THUMBS_PER_ROW]
    ):
        inside = any(low <= index <= high for low, high in spans)
        column.image(outlined(thumb) if inside else thumb, caption=f"#{index} · {index / fps:.1f}s")
        mark_start, mark_end = column.columns(2, gap=None)
        mark_start.button(
            "start",
            key=f"start_{index}",
            on_click=set_value,
            args=("span_start", index),
            type="tertiary",
            help=f"Span starts at frame {index}",
        )
        mark_end.button(
            "end",
            key=f"end_{index}",
            on_click=set_value,
            args=("span_end", index),
            type="tertiary",
            help=f"Span ends at frame {index}",
        )

with st.sidebar:
    st.subheader("Spans")
    first, last = st.columns(2)
    first.number_input("Start frame", 0, frame_count - 1, key="span_start")
    last.number_input("End frame", 0, frame_count - 1, key="span_end")
    st.button("Add span", key="add_span", on_click=add_span, type="primary", width="stretch")
    for number, (low, high) in enumerate(spans):
        text, delete = st.columns([3, 1], vertical_alignment="center")
        text.write(f"{number + 1}. {low}–{high} · {(high - low + 1) / fps:.1f} s")
        delete.button("delete", key=f"delete_{number}", on_click=delete_span, args=(number,), type="tertiary")
    if not spans:
        st.write("No spans yet.")
    if st.button("Save", key="save", type="primary", width="stretch"):
        saved = save_labels(labels_dir, video, spans)
        st.success(f"Saved {len(spans)} span(s), {sum(h - lo + 1 for lo, h in spans)} frames, to {saved}")
    elif label_path(labels_dir, video).is_file():
        st.caption(f"Saved labels: {label_path(labels_dir, video)}")
