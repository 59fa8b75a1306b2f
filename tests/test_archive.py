"""CellArchive: cell keys, weights by progress and novelty, eviction, counts and plain-data round trip."""

import numpy as np
import pytest

from envs.archive import CellArchive, cell_keys


def screen(block=(0, 0), shade=200):
    """A gray frame (144, 160, 1), black but for one 16x16 block of `shade`."""
    frame = np.zeros((144, 160, 1), np.uint8)
    row, col = block
    frame[16 * row : 16 * row + 16, 16 * col : 16 * col + 16] = shade
    return frame


def key(block=(0, 0), score=0.0, band=1.0, shade=200):
    return cell_keys(screen(block, shade)[None], np.array([score]), band)[0]


def test_a_cell_is_the_coarse_screen_and_the_progress_band():
    assert key((2, 3)) == key((2, 3))
    assert key((2, 3)) != key((2, 4))  # the sprite moved one block
    assert key((2, 3), shade=200) == key((2, 3), shade=220)  # same intensity level (of 8)
    assert key((2, 3), shade=200) != key((2, 3), shade=100)
    assert key(score=4.1, band=4.0) == key(score=7.9, band=4.0)  # band [4, 8)
    assert key(score=3.9, band=4.0) != key(score=4.1, band=4.0)
    assert key(score=-0.1) != key(score=0.1)  # floor: [-1, 0) and [0, 1)
    # A pixel's worth of change inside a block is not a new cell.
    moved = screen((2, 3))
    moved[40, 50] = 255
    assert cell_keys(moved[None], np.array([0.0]), 1.0)[0] == key((2, 3))
    # RGB frames and their gray copies fall into the same cells.
    rgb = np.repeat(screen((5, 6)), 3, axis=-1)
    assert cell_keys(rgb[None], np.array([0.0]), 1.0)[0] == key((5, 6))


def archive_of(scores, seen, band=2.0, capacity=8) -> CellArchive:
    archive = CellArchive(capacity=capacity, band=band)
    for i, (score, count) in enumerate(zip(scores, seen)):
        assert archive.add(f"state {i}".encode(), score, payload=i, key=f"cell {i}".encode())
        archive.count([f"cell {i}".encode()] * count)
    return archive


def test_weights_favour_progress_and_cells_seen_less():
    archive = archive_of([0.0, 2.0, 2.0], seen=[0, 3, 0], band=2.0)
    # exp((score - best) / band) / sqrt(1 + seen), normalised, by hand:
    raw = np.array([np.exp(-1.0) / 1.0, 1.0 / 2.0, 1.0 / 1.0])
    np.testing.assert_allclose(archive.weights(), raw / raw.sum())
    archive.count([b"cell 2"] * 3 + [b"not a cell"])
    assert archive.seen == [0, 3, 3]
    np.testing.assert_allclose(archive.weights()[1], archive.weights()[2])
    draws = np.bincount(archive.sample(np.random.default_rng(0), 20_000), minlength=3) / 20_000
    np.testing.assert_allclose(draws, archive.weights(), atol=0.015)


def test_a_cell_is_saved_once_and_a_full_archive_drops_its_lightest():
    archive = archive_of([0.0, 1.0, 1.0], seen=[0, 5, 5], band=1.0, capacity=3)
    assert not archive.add(b"again", 9.0, key=b"cell 0")  # a known cell keeps its first state
    # Weights now: e^-1 / 1 = 0.37, 1 / sqrt(6) = 0.41, 0.41. A newcomer at score 0 (counted once
    # when found): e^-1 / sqrt(2) = 0.26, the lightest, so it is dropped.
    assert not archive.add(b"new", 0.0, key=b"cell 3")
    # At score 1: 1 / sqrt(2) = 0.71; cell 0 is the lightest and goes, with its state and payload.
    assert archive.add(b"new", 1.0, payload="new's", key=b"cell 3")
    assert archive.keys == [b"cell 1", b"cell 2", b"cell 3"]
    assert archive.states == [b"state 1", b"state 2", b"new"]
    assert archive.payloads == [1, 2, "new's"] and archive.seen == [5, 5, 0]
    with pytest.raises(ValueError, match="needs the cell's key"):
        archive.add(b"no key", 0.0)
    with pytest.raises(ValueError, match="band must be > 0"):
        CellArchive(band=0.0)


def test_archive_round_trips_through_plain_data():
    archive = archive_of([0.5, 1.5], seen=[2, 7], band=3.0, capacity=4)
    restored = CellArchive.from_dict(archive.to_dict())
    assert vars(restored) == vars(archive)
    broken = archive.to_dict() | {"seen": [2]}
    with pytest.raises(ValueError, match="disagree"):
        CellArchive.from_dict(broken)
