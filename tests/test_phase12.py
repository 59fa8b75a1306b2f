"""Phases 1 and 2 end to end at tiny size: tokenizer (1a) -> dynamics (1b) -> rewards, chained
through the .pkl files on a few hundred frames of real EmuQuest speedruns; resume, clear CLI
errors, the held-out ranking metrics, and a data-parallel step on 2 forced host devices."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import jax
import numpy as np
import pytest
import tyro

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the phase scripts live at the repo root

import pretrain_visual  # noqa: E402
import train_reward  # noqa: E402
from data.frames import FramesDataset  # noqa: E402
from data.make_speedruns import Args as SpeedrunArgs  # noqa: E402
from data.make_speedruns import main as make_speedruns  # noqa: E402
from models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from models.reward import load_reward  # noqa: E402
from models.transformer import load_dynamics  # noqa: E402
from models.vqvae import load_encoder, load_tokenizer  # noqa: E402
from training.ranking import branch_pairs, mix_in_branches, ranking_metrics, seen_token_bags, spearman  # noqa: E402

TINY = dict(size="tiny", batch_size=16, seed=0)


@pytest.fixture(scope="session")
def speedrun_frames(tmp_path_factory):
    """Three EmuQuest speedruns, every 32nd frame: about 100 frames per run, and random-play
    branches (in the sibling branches/) every 400 frames."""
    out = tmp_path_factory.mktemp("speedruns")
    make_speedruns(SpeedrunArgs(num_runs=3, frame_every=32, branch_every=400, branch_steps=3, out=out))
    return out / "frames"


@pytest.fixture(scope="session")
def phase1(speedrun_frames, tmp_path_factory):
    """Stage 1a for one epoch, then `--stage all --epochs 2 --resume`: 1a continues from its
    train_state for epoch 2, and 1b (no checkpoint yet) starts fresh."""
    out = tmp_path_factory.mktemp("phase1")
    first = pretrain_visual.Args(
        stage="1a", data=speedrun_frames, epochs=1, out_dir=out, restart_every=5, **TINY
    )
    pretrain_visual.main(first)
    steps_per_epoch = load_checkpoint(out / "pretrained_tokenizer.pkl", "tokenizer")["step"]
    resumed = pretrain_visual.Args(
        stage="all", data=speedrun_frames, epochs=2, out_dir=out, restart_every=5, resume=True, **TINY
    )
    return out, pretrain_visual.main(resumed), steps_per_epoch


def records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_phase1_writes_loadable_checkpoints_and_reports(phase1, speedrun_frames):
    out, results, _ = phase1
    for name in (
        "pretrained_tokenizer.pkl",
        "pretrained_encoder.pkl",
        "pretrained_dynamics.pkl",
        "training_curves.png",
    ):
        assert (out / name).is_file(), name
    grid = cv2.imread(str(out / "recon_grid.png"))
    assert grid.shape == (2 * 144, 8 * 160, 3)  # originals over reconstructions

    tokenizer_1a, dynamics_1b = results["1a"], results["1b"]
    assert (
        0 < tokenizer_1a["codes_used"] <= 64 and tokenizer_1a["code_use"] == tokenizer_1a["codes_used"] / 64
    )
    assert tokenizer_1a["codes_restarted"] > 0  # dead codes were moved onto the data
    assert 0 <= dynamics_1b["eval_copy_accuracy"] <= 1 and 0 <= dynamics_1b["eval_accuracy"] <= 1
    logged = records(out)
    assert [(r["stage"], r["epoch"]) for r in logged] == [
        ("1a", 1),
        ("1a", 2),
        ("1b", 1),
        ("1b", 2),
    ]  # no epoch redone
    # Both stages learn, even at this size: held-out reconstruction and next-token loss improve.
    assert logged[1]["eval_recon_mse"] < logged[0]["eval_recon_mse"]
    assert logged[3]["eval_loss"] < logged[2]["eval_loss"]

    # The tokenizer and the RL encoder give the same tokens; the dynamics model reads them.
    frames = FramesDataset(speedrun_frames, show_progress=False).frames[:4]
    _, tokens, _ = load_tokenizer(out / "pretrained_tokenizer.pkl").encode(frames)
    _, encoder_tokens, _ = load_encoder(out / "pretrained_encoder.pkl").encode(frames)
    assert tokens.shape == (4, 9, 10)
    np.testing.assert_array_equal(tokens, encoder_tokens)
    assert load_dynamics(out / "pretrained_dynamics.pkl")(tokens).shape == (4, 9, 10, 64)
    assert "decoder" not in load_checkpoint(out / "pretrained_encoder.pkl", "encoder")["params"]


def test_resume_continued_from_train_state(phase1):
    out, _, steps_per_epoch = phase1
    tokenizer = load_checkpoint(out / "pretrained_tokenizer.pkl", "tokenizer")
    assert tokenizer["train_state"]["epoch"] == 2 and tokenizer["step"] == 2 * steps_per_epoch > 0
    assert load_checkpoint(out / "pretrained_dynamics.pkl", "dynamics")["train_state"]["epoch"] == 2


@pytest.mark.parametrize("backbone", ["resnet34", "vq"])
def test_reward_from_phase1_tokenizer(phase1, speedrun_frames, backbone):
    out, _, _ = phase1
    args = train_reward.Args(
        backbone=backbone,
        data=speedrun_frames,
        epochs=1,
        pairs_per_epoch=64,
        out_dir=out,
        min_gap=4,
        tokenizer=Path("pretrained_tokenizer.pkl"),
        head_hidden=32,
        **TINY,
    )
    summary = train_reward.main(args)
    assert 0 <= summary["eval_pairwise_accuracy"] <= 1 and -1 <= summary["eval_spearman"] <= 1

    # The saved model runs standalone and reproduces the reported held-out ranking (bf16 weights).
    model = load_reward(out / f"reward_{backbone}.pkl")
    data = FramesDataset(speedrun_frames, show_progress=False)
    held_out = data.run_indices(data.num_runs - 1)
    scores = np.asarray(model.score(data.frames[held_out]))
    again = ranking_metrics(scores, data.frame_index[held_out], 4)
    assert again["pairs"] == summary["eval_pairs"]
    assert abs(again["pairwise_accuracy"] - summary["eval_pairwise_accuracy"]) < 0.05


def test_vq_reward_ranks_branches(phase1, speedrun_frames):
    out, _, _ = phase1
    args = train_reward.Args(
        backbone="vq",
        data=speedrun_frames,
        branches=speedrun_frames.parent / "branches",
        branch_fraction=0.5,
        epochs=1,
        pairs_per_epoch=64,
        out_dir=out / "branched",
        min_gap=4,
        tokenizer=out / "pretrained_tokenizer.pkl",
        head_hidden=32,
        **TINY,
    )
    summary = train_reward.main(args)
    assert 0 <= summary["eval_branch_accuracy"] <= 1
    assert 0 <= summary["eval_pairwise_accuracy"] <= 1
    with pytest.raises(SystemExit, match="--branch-fraction"):
        train_reward.main(dataclasses.replace(args, branch_fraction=1.0))
    with pytest.raises(SystemExit, match="--branches: .*does not exist"):
        train_reward.main(dataclasses.replace(args, branches=out / "missing"))


@pytest.mark.parametrize("events, drift_fraction", [(0, 0.0), (4, 0.5)])
def test_seen_token_reward_trains_on_bags_and_scores_them_standalone(
    phase1, speedrun_frames, events, drift_fraction
):
    out, _, _ = phase1
    args = train_reward.Args(
        backbone="vq",
        data=speedrun_frames,
        branches=speedrun_frames.parent / "branches",
        seen_tokens=True,
        events=events,
        drift_fraction=drift_fraction,
        epochs=1,
        pairs_per_epoch=64,
        out_dir=out / f"bags_{events}",
        min_gap=4,
        tokenizer=out / "pretrained_tokenizer.pkl",
        head_hidden=32,
        **TINY,
    )
    summary = train_reward.main(args)
    assert 0 <= summary["eval_branch_accuracy"] <= 1

    # The saved model, given the held-out run's bags, reproduces the reported ranking (bf16 weights).
    model = load_reward(out / f"bags_{events}" / "reward_vq.pkl")
    assert model.cfg.seen_tokens and model.cfg.bag_size == model.cfg.tokenizer.vocab_size
    assert model.cfg.events == events
    data = FramesDataset(speedrun_frames, show_progress=False)
    held_out = data.run_indices(data.num_runs - 1)
    tokens = np.asarray(model.observe(data.frames))
    bags = seen_token_bags(tokens, data, None, model.cfg.bag_size)
    scores = np.asarray(model.score_observations(tokens[held_out], bags[held_out]))
    again = ranking_metrics(scores, data.frame_index[held_out], 4)
    assert abs(again["pairwise_accuracy"] - summary["eval_pairwise_accuracy"]) < 0.05
    with pytest.raises(ValueError, match="reads a bag"):
        model.score(data.frames[:2])
    with pytest.raises(SystemExit, match="--seen-tokens needs --backbone vq"):
        train_reward.main(dataclasses.replace(args, backbone="resnet34"))
    with pytest.raises(SystemExit, match="--events -1"):
        train_reward.main(dataclasses.replace(args, events=-1))
    with pytest.raises(SystemExit, match="--events 4: needs --seen-tokens"):
        train_reward.main(dataclasses.replace(args, events=4, seen_tokens=False))
    with pytest.raises(SystemExit, match="--drift-fraction"):
        train_reward.main(dataclasses.replace(args, drift_fraction=1.5))


def test_eval_every_evaluates_at_its_epochs_and_the_last_and_changes_no_weights(phase1, speedrun_frames):
    out, _, _ = phase1
    args = train_reward.Args(
        backbone="vq",
        data=speedrun_frames,
        epochs=3,
        pairs_per_epoch=32,
        min_gap=4,
        tokenizer=out / "pretrained_tokenizer.pkl",
        head_hidden=32,
        **TINY,
    )
    every_epoch = train_reward.main(dataclasses.replace(args, out_dir=out / "eval_every_1"))
    sparse = train_reward.main(dataclasses.replace(args, out_dir=out / "eval_every_2", eval_every=2))
    assert [("eval_pairwise_accuracy" in r) for r in records(out / "eval_every_2")] == [False, True, True]
    assert sparse["eval_pairwise_accuracy"] == every_epoch["eval_pairwise_accuracy"]
    weights = [load_checkpoint(out / f"eval_every_{n}" / "reward_vq.pkl", "reward")["params"] for n in (1, 2)]
    for mine, theirs in zip(jax.tree.leaves(weights[0]), jax.tree.leaves(weights[1])):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(SystemExit, match="--eval-every"):
        train_reward.main(dataclasses.replace(args, eval_every=0))


def test_mix_in_branches_puts_the_branch_frame_first():
    # 2 batches of 2 order pairs, then 1 branch pair each; branch b is observation 10 + b.
    earlier, later = np.array([0, 1, 2, 3]), np.array([5, 6, 7, 8])
    branches = SimpleNamespace(below=np.array([4, 9, 2]))
    low, high = branch_pairs(np.array([[2], [0]]), branches, 10, np.random.default_rng(0))
    mixed_earlier, mixed_later = mix_in_branches(earlier, later, low, high)
    np.testing.assert_array_equal(mixed_earlier, [0, 1, 12, 2, 3, 10])
    np.testing.assert_array_equal(mixed_later, [5, 6, 2, 7, 8, 4])


def test_drift_pairs_rank_a_branch_frame_below_its_own_past():
    # Two branches of 3 steps after observation 20: branch numbers 0-2 left run frame 5, 3-5 run frame 7.
    branches = SimpleNamespace(
        below=np.array([6, 7, 8, 8, 9, 10]), start=np.array([5, 5, 5, 7, 7, 7]), step=np.array([1, 2, 3] * 2)
    )
    branch = np.repeat(np.arange(6), 200).reshape(40, 30)
    low, high = branch_pairs(branch, branches, 20, np.random.default_rng(0), drift_fraction=1.0)
    np.testing.assert_array_equal(low, 20 + branch)
    for b in range(6):
        first = 20 + b - branches.step[b] + 1  # the branch's step 1
        past = {branches.start[b], *range(first, 20 + b)}  # the run frame it left, then its earlier steps
        assert set(high[branch == b]) == past
    _, half = branch_pairs(branch, branches, 20, np.random.default_rng(0), drift_fraction=0.5)
    assert 0.4 < np.mean(half == branches.below[branch]) < 0.6


def test_ranking_metrics_by_hand():
    # Scores 0, 2, 1, 3 for frames 0..3: pairs with gap >= 1 are (0,1) (0,2) (0,3) (1,2) (1,3) (2,3);
    # only (1,2) is out of order.
    metrics = ranking_metrics(np.array([0.0, 2.0, 1.0, 3.0]), np.arange(4), min_gap=1)
    assert metrics["pairs"] == 6 and metrics["pairwise_accuracy"] == pytest.approx(5 / 6)
    # Spearman = 1 - 6 * sum(d^2) / (n (n^2 - 1)) with rank differences (0, 1, -1, 0): 1 - 12/60.
    assert metrics["spearman"] == pytest.approx(0.8)
    assert spearman(np.array([1.0, 1.0, 2.0]), np.arange(3)) == pytest.approx(np.sqrt(3) / 2)
    assert ranking_metrics(np.arange(4.0), np.arange(4), min_gap=3)["pairs"] == 1


def test_clear_errors_for_bad_input(phase1, speedrun_frames, tmp_path):
    out, _, _ = phase1
    with pytest.raises(SystemExit, match="does not exist"):
        pretrain_visual.main(pretrain_visual.Args(data=tmp_path / "missing", **TINY))
    with pytest.raises(SystemExit, match="is a 'dynamics' checkpoint, expected 'tokenizer'"):
        pretrain_visual.main(
            pretrain_visual.Args(
                stage="1b",
                data=speedrun_frames,
                tokenizer=out / "pretrained_dynamics.pkl",
                out_dir=tmp_path,
                **TINY,
            )
        )
    with pytest.raises(SystemExit, match="is a 'dynamics' checkpoint, expected 'encoder' or 'tokenizer'"):
        train_reward.main(
            train_reward.Args(
                backbone="vq",
                data=speedrun_frames,
                tokenizer=out / "pretrained_dynamics.pkl",
                out_dir=tmp_path,
                **TINY,
            )
        )


def test_cli_help_and_one_line_errors(tmp_path, capsys):
    for script, flag in ((pretrain_visual, "--stage"), (train_reward, "--backbone")):
        with pytest.raises(SystemExit) as shown:
            tyro.cli(script.Args, args=["--help"])
        assert shown.value.code == 0 and flag in capsys.readouterr().out
    failed = subprocess.run(
        [sys.executable, str(REPO / "train_reward.py"), "--data", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: --data:")


SHARDED_STEP = """
import jax, numpy as np
from flax import nnx
from models.sharding import data_mesh, replicate, shard_batch
from models.transformer import TokenTransformer, TransformerConfig, dynamics_loss
from training.steps import make_optimizer, make_train_step

model = TokenTransformer(
    TransformerConfig(vocab_size=32, embed_dim=16, num_layers=1, num_heads=2), rngs=nnx.Rngs(0)
)
graphdef, trainable, frozen = nnx.split(model, nnx.Param, ...)
trainable = jax.tree.map(np.asarray, trainable)  # host copies: each run below donates its own device buffers
optimizer = make_optimizer(1e-3, 10)
step = make_train_step(graphdef, optimizer, lambda model, batch, key: dynamics_loss(model, *batch))
tokens = np.random.default_rng(0).integers(0, 32, (2, 8, 9, 10), dtype=np.int32)
results = []
for devices in (jax.devices()[:1], jax.devices()):
    mesh = data_mesh(devices)
    state = replicate(
        {"trainable": trainable, "frozen": frozen, "opt_state": optimizer.init(trainable)}, mesh
    )
    state, metrics = step(state, shard_batch((tokens[0], tokens[1]), mesh), jax.random.key(0))
    results.append((float(metrics["loss"]), jax.tree.leaves(nnx.to_pure_dict(state["trainable"]))))
assert len(jax.devices()) == 2
(loss_1, params_1), (loss_2, params_2) = results
np.testing.assert_allclose(loss_1, loss_2, rtol=1e-5)
for a, b in zip(params_1, params_2):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
print("losses", loss_1, loss_2)
"""


def test_sharded_step_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", SHARDED_STEP], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "losses" in done.stdout


class StopAfter:
    """Stands in for StopRequest: the stop is requested at the `checks`-th look, as if Ctrl-C came then."""

    def __init__(self, checks: int):
        self.left = checks

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    @property
    def requested(self) -> bool:
        self.left -= 1
        return self.left < 0


def final_weights(path: Path, kind: str) -> list[np.ndarray]:
    return jax.tree.leaves(load_checkpoint(path, kind)["train_state"]["params"])


@pytest.mark.parametrize("stage", ["1a", "1b"])
def test_ctrl_c_saves_mid_epoch_and_resume_continues_exactly(
    stage, phase1, speedrun_frames, tmp_path, monkeypatch
):
    """Stopped in the middle of epoch 2 (restarting codes every 2 steps in 1a, so the usage counter
    matters), saved, and resumed: the same weights and the same logged epochs as a run never stopped."""
    out, _, steps_per_epoch = phase1
    common = dict(stage=stage, data=speedrun_frames, epochs=2, restart_every=2, eval_every=2, **TINY)
    if stage == "1b":
        common["tokenizer"] = out / "pretrained_tokenizer.pkl"
    kind, name = (
        ("tokenizer", "pretrained_tokenizer.pkl")
        if stage == "1a"
        else ("dynamics", "pretrained_dynamics.pkl")
    )
    pretrain_visual.main(pretrain_visual.Args(out_dir=tmp_path / "straight", **common))
    with monkeypatch.context() as patch:
        patch.setattr(pretrain_visual, "StopRequest", lambda: StopAfter(checks=steps_per_epoch + 3))
        with pytest.raises(
            SystemExit, match=rf"interrupted in epoch 2 after step 4: saved .*{name}; run again"
        ):
            pretrain_visual.main(pretrain_visual.Args(out_dir=tmp_path / "stopped", **common))
    assert load_checkpoint(tmp_path / "stopped" / name, kind)["train_state"]["step"] == 4
    pretrain_visual.main(pretrain_visual.Args(out_dir=tmp_path / "stopped", resume=True, **common))
    for mine, theirs in zip(
        final_weights(tmp_path / "stopped" / name, kind), final_weights(tmp_path / "straight" / name, kind)
    ):
        np.testing.assert_array_equal(mine, theirs)

    def deterministic(out_dir):
        return [
            {k: v for k, v in r.items() if k not in ("frames_per_s", "pairs_per_s")} for r in records(out_dir)
        ]

    assert deterministic(tmp_path / "stopped") == deterministic(tmp_path / "straight")


def test_ctrl_c_in_phase_1_saves_and_exits_with_one_line(speedrun_frames, tmp_path):
    """A real SIGINT to a real run: no traceback, and a checkpoint to resume from."""
    command = [
        sys.executable,
        "pretrain_visual.py",
        "--data",
        str(speedrun_frames),
        "--size",
        "tiny",
        "--stage",
        "1a",
        "--epochs",
        "50",
        "--out-dir",
        str(tmp_path),
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # the first epoch's line: training is under way
        if line.startswith("1a epoch 1/50"):
            break
    process.send_signal(2)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted in epoch")
    assert load_checkpoint(tmp_path / "pretrained_tokenizer.pkl", "tokenizer")["train_state"]["epoch"] >= 1


def test_a_diverging_run_stops_at_the_first_nan_and_keeps_the_last_good_checkpoint(speedrun_frames, tmp_path):
    pretrain_visual.main(
        pretrain_visual.Args(stage="1a", data=speedrun_frames, epochs=1, out_dir=tmp_path, **TINY)
    )
    good = (tmp_path / "pretrained_tokenizer.pkl").read_bytes()
    logged = records(tmp_path)
    with pytest.raises(
        SystemExit,
        match=r"stage 1a: the loss or its gradient became NaN or infinite at step \d+; "
        r"stopped before saving, so .* keeps the last good weights",
    ):
        pretrain_visual.main(
            pretrain_visual.Args(stage="1a", data=speedrun_frames, epochs=2, lr=1e8, out_dir=tmp_path, **TINY)
        )
    assert (tmp_path / "pretrained_tokenizer.pkl").read_bytes() == good
    assert records(tmp_path) == []  # the fresh run dropped the old records and logged no NaN epoch
    assert logged  # (the good run had logged its epoch)
    with pytest.raises(
        SystemExit, match=r"reward: the loss or its gradient became NaN or infinite at step \d+"
    ):
        train_reward.main(
            train_reward.Args(
                data=speedrun_frames,
                tokenizer=tmp_path / "pretrained_tokenizer.pkl",
                epochs=2,
                lr=1e8,
                min_gap=4,
                out_dir=tmp_path / "reward",
                **TINY,
            )
        )
    assert not (tmp_path / "reward" / "reward_vq.pkl").exists()


def test_a_checkpoint_holding_nan_is_refused(phase1, speedrun_frames, tmp_path):
    """A NaN tokenizer used to give stage 1b 100% copy accuracy; now it is refused at load."""
    out, _, _ = phase1
    ckpt = load_checkpoint(out / "pretrained_tokenizer.pkl", "tokenizer")
    params = jax.tree.map(np.array, ckpt["params"])
    params["decoder"]["from_latent"]["kernel"][0, 0, 0, 0] = np.nan
    save_checkpoint(tmp_path / "nan.pkl", kind="tokenizer", config=ckpt["config"], params=params, step=1)
    with pytest.raises(SystemExit, match="decoder/from_latent/kernel holds NaN or infinite values"):
        pretrain_visual.main(
            pretrain_visual.Args(
                stage="1b", data=speedrun_frames, tokenizer=tmp_path / "nan.pkl", out_dir=tmp_path, **TINY
            )
        )


def test_the_tokenizer_flag_selects_the_vq_head(phase1, speedrun_frames, tmp_path):
    out, _, _ = phase1
    summary = train_reward.main(
        train_reward.Args(
            data=speedrun_frames,
            tokenizer=out / "pretrained_tokenizer.pkl",
            epochs=1,
            min_gap=4,
            out_dir=tmp_path,
            **TINY,
        )
    )
    assert summary["backbone"] == "vq" and (tmp_path / "reward_vq.pkl").is_file()


def test_an_output_folder_that_cannot_be_written_is_one_line_before_training(speedrun_frames):
    for script in (pretrain_visual, train_reward):
        with pytest.raises(SystemExit, match=r"--out-dir /proc/nope: cannot write there"):
            script.main(script.Args(data=speedrun_frames, out_dir=Path("/proc/nope"), **TINY))


def test_ctrl_c_in_phase_2_saves_the_reward_and_exits_with_one_line(
    phase1, speedrun_frames, tmp_path, monkeypatch
):
    out, _, _ = phase1
    monkeypatch.setattr(train_reward, "StopRequest", lambda: StopAfter(checks=3))
    with pytest.raises(SystemExit, match=r"interrupted in epoch 1 after step 4: saved .*reward_vq.pkl"):
        train_reward.main(
            train_reward.Args(
                data=speedrun_frames,
                tokenizer=out / "pretrained_tokenizer.pkl",
                epochs=5,
                min_gap=4,
                out_dir=tmp_path,
                **TINY,
            )
        )
    assert load_reward(tmp_path / "reward_vq.pkl").cfg.backbone == "vq"


def test_the_tokenizer_stability_bench_runs(speedrun_frames, tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import tokenizer_stability

    table = tokenizer_stability.main(
        tokenizer_stability.Args(
            data=speedrun_frames, size="tiny", steps=20, every=10, output=tmp_path / "t.md"
        )
    )
    rows = [line for line in table.splitlines() if line.startswith("| 1") or line.startswith("| 2")]
    assert [row.split("|")[1].strip() for row in rows] == ["10", "20"]
    assert (tmp_path / "t.md").read_text() == table + "\n"
