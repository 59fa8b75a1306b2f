"""The route reward (training/route.py): speedrun frames matched in order, within a window."""

import numpy as np
import pytest
from PIL import Image

from training.progress import ProgressReward, ProgressSettings
from training.route import Route, RouteTracker, load_routes, scene_bounds


def grid(value: int, changed: int = 0) -> np.ndarray:
    """A (9, 10) token grid of one id, with the first `changed` tokens set to another."""
    tokens = np.full((9, 10), value, np.int32)
    tokens.flat[:changed] = 99
    return tokens


def route_of(values, scores=None) -> Route:
    scores = np.arange(len(values), dtype=np.float32) if scores is None else np.asarray(scores, np.float32)
    return Route(np.stack([grid(v).reshape(-1) for v in values]), scores)


def test_a_frame_counts_only_within_the_window_after_the_last_match():
    tracker = RouteTracker([route_of(range(10))], num_envs=1, window=2, tolerance=0)
    seen = []
    for value in (1, 5, 2, 3, 9, 4, 0):  # 5 and 9 lie beyond the window: a look ahead moves nothing
        tracker.advance(grid(value)[None])
        seen.append(int(tracker.positions[0, 0]))
    assert seen == [1, 1, 2, 3, 3, 4, 4]  # and going back (0) loses nothing
    assert tracker.scores().tolist() == [4.0]


def test_tolerance_repeats_and_the_best_of_several_runs():
    # The route shows grid 1 twice: a frame moves to the furthest match in the window.
    tracker = RouteTracker([route_of([0, 1, 1, 2])], num_envs=2, window=3, tolerance=2)
    tracker.advance(np.stack([grid(1, changed=2), grid(1, changed=3)]))  # 3 tokens off is no match
    assert tracker.positions[:, 0].tolist() == [2, 0]

    first, second = route_of([0, 1, 2, 3], [0, 1, 2, 3]), route_of([0, 2, 3], [0, 10, 20])
    tracker = RouteTracker([first, second], num_envs=2, window=1, tolerance=0)
    tracker.advance(np.stack([grid(1), grid(2)]))
    assert tracker.positions.tolist() == [[1, 0], [0, 1]]
    assert tracker.scores().tolist() == [1.0, 10.0]  # each env's best run


def walking(value: int, tiles: range) -> list[np.ndarray]:
    """Frames of a room of one token id with the 'player' (id 50) on each tile in turn: a step changes 2."""
    frames = []
    for tile in tiles:
        frame = grid(value).reshape(-1)
        frame[tile] = 50
        frames.append(frame)
    return frames


def scripted_run() -> list[np.ndarray]:
    """A room walked over tiles 0-19, a text page of 8 frames, the same room walked back over tiles
    19-10 (it looks as it did before the text) and the next room."""
    room, text, next_room = walking(1, range(20)), walking(2, range(8)), walking(4, range(10))
    return room + text + walking(1, range(19, 9, -1)) + next_room


def test_scenes_end_where_the_next_frame_changes_more_than_scene_change():
    frames = np.stack(scripted_run())
    first, last = scene_bounds(frames, 5)
    assert first.tolist() == [0] * 20 + [20] * 8 + [28] * 10 + [38] * 10
    assert last.tolist() == [19] * 20 + [27] * 8 + [37] * 10 + [47] * 10
    assert [b.tolist() for b in scene_bounds(frames, 0)] == [list(range(48))] * 2  # each frame alone
    assert [b.tolist() for b in scene_bounds(frames, 90)] == [[0] * 48, [47] * 48]


def test_a_scene_is_matched_in_any_order_and_no_text_is_skipped():
    frames = scripted_run()
    route = Route(np.stack(frames), np.arange(len(frames), dtype=np.float32))

    def positions(tracker, seen):
        moved = []
        for t in seen:
            tracker.advance(frames[t].reshape(1, 9, 10))
            moved.append(int(tracker.positions[0, 0]))
        return moved

    scenes = RouteTracker([route], num_envs=1, window=13, tolerance=0, scene_change=5)
    # The room's last tile is credited at once, but neither the next room (beyond the window) nor the
    # room after the text (tile 17, frame 30, looks like frame 17: it stays) until the text is seen.
    assert positions(scenes, [19, 38, 30, 24, 30, 38]) == [19, 19, 19, 24, 30, 38]
    window_only = RouteTracker([route], num_envs=1, window=13, tolerance=0)
    assert positions(window_only, [19, 6, 19, 30]) == [0, 6, 19, 30]  # it skipped the text


def test_a_text_page_at_least_as_long_as_the_barrier_must_be_matched_to_pass_it():
    """A room walked over tiles 0-9, a text box over its bottom three rows for 8 frames (30 tokens
    change: a page), and the room walked back over tiles 9-0 from the moment the box closes (30 tokens
    change again: the room it uncovers is a page of 10 frames). Tile 5 after the text looks like tile
    5 before it."""
    room = walking(1, range(10))
    boxed = room[-1].copy()
    boxed[60:] = 7
    frames = np.stack(room + [boxed] * 8 + walking(1, range(9, -1, -1)))
    route = Route(frames, np.arange(len(frames), dtype=np.float32))
    tile_5 = frames[5].reshape(1, 9, 10)

    def after(tracker, *shown):
        for frame in shown:
            tracker.advance(frame.reshape(1, 9, 10))
        return int(tracker.positions[0, 0])

    assert after(RouteTracker([route], num_envs=1, window=30, tolerance=0), tile_5) == 22  # skipped the text
    barrier = RouteTracker([route], num_envs=1, window=30, tolerance=0, text_barrier=8)
    assert after(barrier, tile_5) == 5  # the reach ends at the page's last frame, 17
    assert after(barrier, boxed) == 17 and after(barrier, tile_5) == 22  # read, then past it
    # A page shorter than the barrier is no barrier: the next one (the room, 10 frames) is.
    assert after(RouteTracker([route], num_envs=1, window=30, tolerance=0, text_barrier=9), tile_5) == 22
    assert after(RouteTracker([route], num_envs=1, window=30, tolerance=0, text_barrier=11), tile_5) == 22


def test_restart_goes_to_power_on_or_a_curriculum_states_positions():
    tracker = RouteTracker([route_of(range(5)), route_of(range(5))], num_envs=3, window=5, tolerance=0)
    tracker.advance(np.stack([grid(3)] * 3))
    tracker.restart(np.array([True, True, False]), {1: np.array([2, 4], np.int32)})
    assert tracker.positions.tolist() == [[0, 0], [2, 4], [3, 3]]


def test_bad_routes_are_refused():
    with pytest.raises(ValueError, match="at least one run"):
        RouteTracker([], num_envs=1, window=1, tolerance=0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        RouteTracker([route_of([0])], num_envs=1, window=0, tolerance=0)
    with pytest.raises(ValueError, match="text barrier >= 0"):
        RouteTracker([route_of([0])], num_envs=1, window=1, tolerance=0, scene_change=-1)
    with pytest.raises(ValueError, match="text barrier >= 0"):
        RouteTracker([route_of([0])], num_envs=1, window=1, tolerance=0, text_barrier=-1)


class TokensOfFrames:
    """A stand-in VQ reward: a 'frame' (N, 9, 10) is its own token grid; it reads no bag."""

    bag_size = 0
    reads_tokens = True

    def tokens(self, frames):
        return np.asarray(frames)


def test_progress_reward_pays_the_routes_score_and_carries_the_positions():
    route = route_of([0, 1, 2, 3], [0.0, 1.0, 5.0, 6.0])
    settings = ProgressSettings(interval=1, time_penalty=0.0, scale=2.0, baseline="best", route_window=2)
    progress = ProgressReward(TokensOfFrames(), 2, settings, [route])
    progress.start(np.stack([grid(0), grid(0)]))
    no = np.array([False, False])
    rewards, scores = progress(np.stack([grid(1), grid(3)]), no)  # env 1 looks too far ahead
    assert scores.tolist() == [1.0, 0.0] and rewards.tolist() == [0.0, 0.0]  # first scores: baselines
    rewards, _ = progress(np.stack([grid(2), grid(1)]), no)
    assert rewards.tolist() == [8.0, 2.0]
    state = progress.episode_state(0)
    assert state["bag"] is None and state["route"].tolist() == [2]
    # Env 1 restarts on a curriculum state saved at position 2: its episode goes on from there.
    rewards, scores = progress(
        np.stack([grid(3), grid(3)]), np.array([False, True]), start_states={1: state | {"memory": None}}
    )
    assert scores.tolist() == [6.0, 6.0] and rewards.tolist() == [2.0, 0.0]  # a new episode's baseline
    again = ProgressReward(TokensOfFrames(), 2, settings, [route])
    again.load_state_dict(progress.state_dict())
    np.testing.assert_array_equal(again.route.positions, progress.route.positions)


def test_an_ended_episode_is_paid_for_its_last_frame_before_the_next_starts():
    """Finishing the game ends an episode on a frame the next step never shows (it shows the reset)."""
    route = route_of([0, 1, 2, 3], [0.0, 1.0, 5.0, 6.0])
    settings = ProgressSettings(interval=2, time_penalty=0.0, baseline="best", route_window=2)
    progress = ProgressReward(TokensOfFrames(), 2, settings, [route])
    progress.start(np.stack([grid(0), grid(0)]))
    no = np.array([False, False])
    progress(np.stack([grid(1), grid(1)]), no)
    _, scores = progress(np.stack([grid(1), grid(1)]), no)
    assert scores.tolist() == [1.0, 1.0]  # the baselines
    # Step 3 is not scored, and both episodes end: env 0's on the route's last frame.
    ended = np.array([True, True])
    rewards, scores = progress(np.stack([grid(0), grid(0)]), ended, last_frames={0: grid(3), 1: grid(1)})
    assert scores is None and rewards.tolist() == [5.0, 0.0]
    assert progress.route.positions[:, 0].tolist() == [0, 0]  # and the next episodes start at power-on
    # Without the last frames, the gain since the last scored frame is lost with the episode.
    assert progress(np.stack([grid(1), grid(1)]), no)[1].tolist() == [1.0, 1.0]
    rewards, _ = progress(np.stack([grid(0), grid(0)]), ended)
    assert rewards.tolist() == [0.0, 0.0]


class PixelTokens:
    """A stand-in VQ reward for load_routes: a frame's tokens are its top-left pixel value everywhere,
    and the score counts the ids in the bag."""

    bag_size = 8
    reads_tokens = True

    def tokens(self, frames):
        return np.broadcast_to(frames[:, :1, :1, 0].astype(np.int32), (len(frames), 9, 10)).copy()

    def score_tokens(self, tokens, bags):
        return bags.sum(axis=1).astype(np.float32)


def test_load_routes_scores_each_frame_with_its_runs_history(tmp_path):
    for run, values in {"run_00": [1, 2, 1, 3], "run_01": [4, 4]}.items():
        (tmp_path / run).mkdir()
        for i, value in enumerate(values):
            Image.fromarray(np.full((144, 160, 3), value, np.uint8)).save(tmp_path / run / f"{i:06d}.png")
    first, second = load_routes(tmp_path, PixelTokens())
    assert first.tokens[:, 0].tolist() == [1, 2, 1, 3] and first.tokens.shape == (4, 90)
    assert first.scores.tolist() == [1, 2, 2, 3] and second.scores.tolist() == [1, 1]
    one_frame = PixelTokens()
    one_frame.reads_tokens = False
    with pytest.raises(ValueError, match="VQ backbone"):
        load_routes(tmp_path, one_frame)


def test_the_fraction_is_the_furthest_point_along_any_run():
    tracker = RouteTracker([route_of(range(5)), route_of(range(9))], num_envs=2, window=9, tolerance=0)
    tracker.advance(np.stack([grid(4), grid(2)]))
    assert tracker.fraction().tolist() == [1.0, 0.5]  # env 0: 4 of 4 and 4 of 8; env 1: 2 of 4, 2 of 8
    assert tracker.fraction(np.array([1, 6])).tolist() == [0.75]  # a curriculum state's positions
    without_route = ProgressReward(TokensOfFrames(), 2, ProgressSettings())
    assert without_route.route_progress().tolist() == [0.0, 0.0]
    with_route = ProgressReward(TokensOfFrames(), 2, ProgressSettings(route_window=9), [route_of(range(5))])
    with_route.start(np.stack([grid(2), grid(4)]))
    assert with_route.route_progress().tolist() == [0.5, 1.0]
    assert with_route.route_progress(new_episodes=np.array([False, True])).tolist() == [0.5, 0.0]
