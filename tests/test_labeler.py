"""Labeler: span and label-file helpers, windowed reading, and the Streamlit app driven by AppTest."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from data.labels import (
    label_path,
    load_labels,
    normalize_spans,
    open_video,
    read_window,
    save_labels,
    span_to_indices,
    spans_from_chunks,
)

APP = str(Path(__file__).resolve().parents[1] / "data" / "labeler.py")
NUM_FRAMES, FPS = 300, 60


def frame_at(t: int) -> np.ndarray:
    """Frame t of the test video: a square walking across a background that darkens with t."""
    frame = np.full((144, 160, 3), (200 - t // 2, 120, 60), np.uint8)
    x = (t * 2) % 140
    frame[60:80, x : x + 20] = (255, 255, 255)
    return frame


@pytest.fixture(autouse=True)
def keep_main_module():
    """AppTest runs the app as sys.modules["__main__"] and leaves it there. Multiprocessing
    workers started later in the session (VecGameBoy) re-run the parent's __main__ file,
    which would then be the Streamlit app, so put the real one back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "walk.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (160, 144))
    for t in range(NUM_FRAMES):
        writer.write(frame_at(t))
    writer.release()
    return path


def test_span_helpers():
    assert span_to_indices(5, 8) == [5, 6, 7, 8] == span_to_indices(8, 5)
    assert normalize_spans([(30, 40), (0, 10), (11, 12), (35, 50), (9, 3)]) == [(0, 12), (30, 50)]
    assert spans_from_chunks([[4, 5, 6], [], [10, 11]]) == [(4, 6), (10, 11)]


def test_save_and_load_labels(tmp_path, video):
    labels = tmp_path / "labeled_frames"
    assert load_labels(labels, video) is None
    saved = save_labels(labels, video, [(20, 23), (2, 4), (22, 25)])
    assert saved == labels / "walk.json" == label_path(labels, video)
    assert json.loads(saved.read_text()) == [[2, 3, 4], [20, 21, 22, 23, 24, 25]]
    assert load_labels(labels, video) == [[2, 3, 4], [20, 21, 22, 23, 24, 25]]
    assert [p.name for p in labels.iterdir()] == ["walk.json"]  # no temp file left behind
    saved.write_text('{"spans": [1, 2]}')
    with pytest.raises(ValueError, match="list of lists"):
        load_labels(labels, video)


def test_read_window_seeks_to_the_same_frames_as_a_full_read(video):
    capture, info = open_video(video)
    assert (info.frame_count, info.fps, info.width, info.height) == (NUM_FRAMES, FPS, 160, 144)
    sequential = []
    while (frame := capture.read())[0]:
        sequential.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB))
    capture.release()

    indices, images = read_window(video, 137, 30, step=12)
    assert indices == [137, 149, 161]
    for index, image in zip(indices, images):
        np.testing.assert_array_equal(image, sequential[index])
    indices, thumbs = read_window(video, 290, 60, step=5, thumb_width=80)
    assert indices == [290, 295] and thumbs[0].shape == (72, 80, 3)  # clipped at the end of the video
    with pytest.raises(ValueError, match="not found"):
        read_window(video.with_name("missing.mp4"), 0, 10)


def open_app(video: Path, labels: Path) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.text_input(key="labels_dir").set_value(str(labels)).run()
    app.text_input(key="video_path").set_value(str(video)).run()
    assert not app.exception and not app.error
    return app


def button_keys(app: AppTest) -> list[str]:
    return [button.key for button in app.button]


def test_app_labels_a_video_and_reopens_it(tmp_path, video):
    labels = tmp_path / "labeled_frames"
    app = open_app(video, labels)
    app.number_input(key="window_seconds").set_value(2).run()
    # 2 s windows of 120 frames, thumbnails every 12 frames (5 per second).
    assert [k for k in button_keys(app) if k.startswith("start_")] == [
        f"start_{i}" for i in range(0, 120, 12)
    ]
    assert len(app.image) == 10

    # First span with the thumbnail buttons, across a window boundary.
    app.button(key="start_24").click().run()
    app.button(key="next_window").click().run()
    assert "start_120" in button_keys(app) and "start_108" not in button_keys(app)
    app.button(key="end_180").click().run()
    assert (app.number_input(key="span_start").value, app.number_input(key="span_end").value) == (24, 180)
    app.button(key="add_span").click().run()

    # Second span with the number inputs; a third one, deleted again.
    app.number_input(key="span_start").set_value(250).run()
    app.number_input(key="span_end").set_value(260).run()
    app.button(key="add_span").click().run()
    app.number_input(key="span_start").set_value(200).run()
    app.number_input(key="span_end").set_value(205).run()
    app.button(key="add_span").click().run()
    assert [m.value for m in app.markdown if m.value.startswith(("1.", "2.", "3."))] == [
        "1. 24–180 · 2.6 s",
        "2. 200–205 · 0.1 s",
        "3. 250–260 · 0.2 s",
    ]
    app.button(key="delete_1").click().run()
    app.button(key="save").click().run()
    assert not app.exception
    assert "Saved 2 span(s), 168 frames" in app.success[0].value
    assert json.loads((labels / "walk.json").read_text()) == [list(range(24, 181)), list(range(250, 261))]

    reopened = open_app(video, labels)
    assert [m.value for m in reopened.markdown if m.value[:2] in ("1.", "2.")] == [
        "1. 24–180 · 2.6 s",
        "2. 250–260 · 0.2 s",
    ]


def test_app_reports_a_bad_video(tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.text_input(key="video_path").set_value(str(not_a_video)).run()
    assert not app.exception
    assert "not a readable video" in app.error[0].value
