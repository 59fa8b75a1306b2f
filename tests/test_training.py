"""The shared training package: atomic writes, the metrics log and its stages, eval epochs."""

import json
import os
import warnings

import numpy as np
import pytest

from models.checkpoint import save_checkpoint
from training.data import map_batches
from training.io import atomic_path, atomic_write
from training.metrics import Curves, MetricsLog, Panel, read_records
from training.policy_io import load_resumable
from training.steps import is_eval_epoch

CURVES = {
    "1a": Curves("epoch", (Panel("loss", ("train_loss",)),)),
    "reward": Curves("epoch", (Panel("loss", ("train_loss",)), Panel("ranking", ("eval_spearman",)))),
}


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "sub" / "table.md"
    atomic_write(path, "first")
    atomic_write(path, b"second")
    assert path.read_text() == "second"
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        assert tmp.suffix == ".md" and tmp.parent == path.parent
        raise RuntimeError("interrupted")
    assert path.read_text() == "second" and os.listdir(path.parent) == ["table.md"]


def test_metrics_log_redraws_first_then_throttled_and_on_exit(tmp_path):
    """Every record reaches metrics.jsonl at once; the curves are drawn after the first epoch,
    not again within redraw_seconds, and once more when the block ends, even on an error."""
    drawn = []
    with pytest.raises(KeyboardInterrupt), MetricsLog(tmp_path, CURVES, redraw_seconds=3600) as log:
        real_plot = log.plot
        log.plot = lambda: (drawn.append(len(log.path.read_text().splitlines())), real_plot())
        log.start("reward")
        for epoch in range(1, 6):
            log.write({"stage": "reward", "epoch": epoch, "train_loss": 1.0 / epoch})
        assert drawn == [1] and len(log.path.read_text().splitlines()) == 5
        raise KeyboardInterrupt
    assert drawn == [1, 5]
    assert (tmp_path / "training_curves.png").stat().st_size > 0
    with MetricsLog(tmp_path, CURVES, redraw_seconds=0) as log:
        log.plot = lambda: (drawn.append("every"), MetricsLog.plot(log))
        log.start("reward")
        log.write({"stage": "reward", "epoch": 1, "train_loss": 1.0})
        log.write({"stage": "reward", "epoch": 2, "train_loss": 0.5})
    assert drawn[2:] == ["every", "every"]  # nothing left to draw on exit


def test_starting_a_stage_keeps_the_other_stages_records(tmp_path):
    """A fresh run of one stage drops only its own earlier records; a resumed one drops those past
    its checkpoint, which it logs again."""
    with MetricsLog(tmp_path, CURVES) as log:
        log.start("1a")
        log.start("reward")
        for epoch in (1, 2, 3):
            log.write({"stage": "1a", "epoch": epoch, "train_loss": 1.0})
            log.write({"stage": "reward", "epoch": epoch, "train_loss": 2.0})
    with MetricsLog(tmp_path, CURVES) as log:
        log.start("reward", after=2)
        assert [(r["stage"], r["epoch"]) for r in read_records(log.path)] == [
            ("1a", 1),
            ("reward", 1),
            ("1a", 2),
            ("reward", 2),
            ("1a", 3),
        ]
        log.start("1a")
        assert [(r["stage"], r["epoch"]) for r in read_records(log.path)] == [("reward", 1), ("reward", 2)]
        with pytest.raises(ValueError, match="before MetricsLog.start"):
            log.write({"stage": "ppo", "epoch": 1})


def test_a_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"stage": "1a", "epoch": 1}) + "\n" + '{"stage": "1a", "ep')
    with pytest.warns(UserWarning, match="cut short"):
        assert read_records(path) == [{"stage": "1a", "epoch": 1}]
    path.write_text('{"bad\n' + json.dumps({"stage": "1a", "epoch": 1}) + "\n")
    with warnings.catch_warnings(), pytest.raises(ValueError, match="line 1 is not JSON"):
        read_records(path)


def test_eval_epochs_are_every_n_and_the_last():
    assert [is_eval_epoch(epoch, 2, 5) for epoch in range(5)] == [False, True, False, True, True]


def test_resume_refuses_a_policy_without_its_train_state_in_one_line(tmp_path):
    exported = save_checkpoint(tmp_path / "policy.pkl", kind="policy", config={}, params={}, step=3)
    with pytest.raises(SystemExit, match=r"^error: --resume: .*policy.pkl holds no train_state"):
        load_resumable(exported)
    with pytest.raises(SystemExit, match=r"^error: --resume: .*missing.pkl: no such checkpoint file"):
        load_resumable(tmp_path / "missing.pkl")


@pytest.mark.parametrize("local", [False, True])
def test_map_batches_pads_every_batch_to_one_shape_and_trims_the_results(local):
    """Seven rows in batches of 3: fn sees (3, ...) three times, the last padded with zeros; tuples in
    and out; the results are the rows' own, as numpy arrays."""
    seen = []

    def fn(batch):
        rows, weights = batch
        seen.append((rows.shape, weights.shape))
        return rows.sum(axis=1), rows * weights[:, None]

    rows, weights = np.arange(14, dtype=np.float32).reshape(7, 2), np.arange(7, dtype=np.float32)
    sums, scaled = map_batches(fn, (rows, weights), 3, local=local)
    assert seen == [((3, 2), (3,))] * 3
    assert isinstance(sums, np.ndarray) and isinstance(scaled, np.ndarray)
    np.testing.assert_array_equal(sums, rows.sum(axis=1))
    np.testing.assert_array_equal(scaled, rows * weights[:, None])
