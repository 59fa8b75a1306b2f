"""Latent action model: the change-weighted loss, overfitting a few pairs, dead-code
replacement, the code/button report, the video tokenizer, and train_lam.py end to end."""

import json

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import train_lam
from envs.actions import ACTION_NAMES
from models.checkpoint import load_checkpoint
from models.lam import LAMConfig, LatentActionModel, change_weighted_loss, lam_loss, load_lam
from models.quantizers import QuantizerConfig, make_quantizer, replace_unused_codes
from training.lam_report import buttons_in_effect, code_button_report, no_action_report

TINY = dict(channels=(8, 16), action_dim=8, pool=4)
MOVES = {"noop": (0, 0), "up": (-16, 0), "down": (16, 0), "left": (0, -16), "right": (0, 16)}


def walk(buttons, start=(64, 64), seed=0):
    """A 16x16 sprite on a fixed textured background, moved 16 px by each button (noop: no change).
    Returns (len(buttons) + 1, 144, 160, 3) uint8 frames."""
    background = (
        np.random.default_rng(seed).integers(60, 120, (9, 10, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)
    )
    y, x = start
    frames = []
    for button in (None, *buttons):
        if button is not None:
            dy, dx = MOVES[button]
            y, x = int(np.clip(y + dy, 0, 128)), int(np.clip(x + dx, 0, 144))
        frame = background.copy()
        frame[y : y + 16, x : x + 16] = (250, 230, 40)
        frames.append(frame)
    return np.stack(frames)


def write_walk_run(run_dir, buttons, seed):
    """A run directory like data/make_speedruns.py writes: PNGs plus metadata.json with the presses."""
    run_dir.mkdir(parents=True)
    frames = walk(buttons, seed=seed)
    records = []
    for t, frame in enumerate(frames):
        name = f"{t:06d}.png"
        cv2.imwrite(str(run_dir / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        records.append({"file": name, "frame": 4 * t, "buttons": []})
    presses = [
        {"frame": 4 * t + 1, "button": b, "frames_held": 2} for t, b in enumerate(buttons) if b != "noop"
    ]
    (run_dir / "metadata.json").write_text(json.dumps({"frames": records, "presses": presses}))


def test_change_weighted_loss_matches_hand_computation():
    # One image of 2 pixels x 2 channels. Pixel 0 moves by 0.05 (under the 0.1 threshold: unchanged),
    # pixel 1 moves by 1.0 in channel 1 (changed).
    prev = jnp.array([[[[0.0, 0.0], [0.0, 0.0]]]])
    target = jnp.array([[[[0.05, 0.0], [0.0, 1.0]]]])
    pred = jnp.array([[[[0.55, 0.0], [0.0, 0.5]]]])
    loss, metrics = change_weighted_loss(pred, target, prev, change_weight=3.0, threshold=0.1)
    # Squared errors: pixel 0 (0.25, 0), pixel 1 (0, 0.25). Weights 1 and 1 + 3 = 4.
    # loss = (1 * 0.25 + 4 * 0.25) / (2 channels * (1 + 4)) = 1.25 / 10
    np.testing.assert_allclose(loss, 0.125, rtol=1e-6)
    np.testing.assert_allclose(metrics["changed_mse"], 0.125, rtol=1e-6)  # (0 + 0.25) / 2 channels
    np.testing.assert_allclose(metrics["unchanged_mse"], 0.125, rtol=1e-6)
    np.testing.assert_allclose(metrics["changed_fraction"], 0.5)
    plain, _ = change_weighted_loss(pred, target, prev, change_weight=0.0, threshold=0.1)
    np.testing.assert_allclose(plain, jnp.mean((pred - target) ** 2), rtol=1e-6)


@pytest.mark.parametrize("kind", ["nsvq", "fsq", "vq"])
def test_untrained_lam_predicts_the_copy_baseline(kind):
    cfg = LAMConfig(**TINY, quantizer=QuantizerConfig(kind=kind, codebook_size=8, levels=(2, 2, 2)))
    model = LatentActionModel(cfg, rngs=nnx.Rngs(0))
    assert cfg.vocab_size == 8
    frames = walk(["right", "down"])
    prediction, codes, _ = model(frames[:-1], frames[1:], None)
    np.testing.assert_allclose(prediction, model.prepare(frames[:-1]), atol=1e-6)
    assert prediction.shape == (2, 36, 40, 3) and codes.shape == (2,)


def test_lam_overfits_a_few_dozen_pairs():
    buttons = [("noop", "up", "down", "left", "right")[i % 5] for i in range(36)]
    frames = walk(buttons, start=(48, 48))
    batch = (frames[:-1], frames[1:])
    model = LatentActionModel(LAMConfig(**TINY), rngs=nnx.Rngs(0))  # NSVQ, 8 codes
    optimizer = optax.adam(3e-3)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, batch, key):
        def loss_of(params):
            return lam_loss(
                nnx.merge(graphdef, params, rest), batch, key, change_weight=10.0, change_threshold=0.01
            )

        (_, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    for i in range(150):
        params, opt_state, metrics = step(params, opt_state, batch, jax.random.key(i))
    _, final = lam_loss(
        nnx.merge(graphdef, params, rest), batch, None, change_weight=10.0, change_threshold=0.01
    )
    assert float(final["mse"]) < 0.25 * float(final["copy_mse"]), (
        float(final["mse"]),
        float(final["copy_mse"]),
    )


def test_replacement_revives_an_unused_code():
    quantizer = make_quantizer(QuantizerConfig(kind="nsvq", dim=4, codebook_size=8), nnx.Rngs(0))
    codebook = np.zeros((8, 4), np.float32)
    codebook[:, 0] = np.arange(8) * 10.0  # codes spread along one axis
    quantizer.codebook[...] = jnp.asarray(codebook)
    # Two clusters of latents, both around code 0 and code 1: codes 2..7 are never picked.
    rng = np.random.default_rng(0)
    z = jnp.asarray(
        np.concatenate([rng.normal(0, 1, (64, 4)), rng.normal(0, 1, (64, 4)) + [10, 0, 0, 0]]), jnp.float32
    )
    _, indices, _ = quantizer(z, None)
    usage = jnp.bincount(indices, length=8)
    assert set(np.flatnonzero(np.asarray(usage))) == {0, 1}
    replaced = quantizer.replace_unused_codes(usage, jax.random.key(0), min_fraction=0.05)
    assert int(replaced) == 6
    new = np.asarray(quantizer.codebook[...])
    np.testing.assert_array_equal(new[:2], codebook[:2])  # used codes stay
    # Each replaced code is a used code plus a little noise...
    assert all(
        min(np.linalg.norm(row - codebook[0]), np.linalg.norm(row - codebook[1])) < 0.5 for row in new[2:]
    )
    # ...so it now splits that code's cluster and gets picked.
    _, indices_after, _ = quantizer(z, None)
    assert int(jnp.sum(jnp.bincount(indices_after, length=8) > 0)) > 2


def test_replacement_keeps_codes_above_the_threshold():
    codebook = jnp.arange(12.0).reshape(4, 3)
    usage = jnp.array([50, 30, 19, 1])  # code 3 has 1% of the window's picks
    new, replaced = replace_unused_codes(codebook, usage, jax.random.key(0), min_fraction=0.05)
    assert int(replaced) == 1
    np.testing.assert_array_equal(new[:3], codebook[:3])


def test_two_level_fsq_splits_inputs_around_zero():
    # 8 latent actions as FSQ 2 2 2: small inputs near 0 (an untrained projection) must already
    # reach every code, and the rounding must pass a useful gradient back.
    quantizer = make_quantizer(QuantizerConfig(kind="fsq", dim=3, levels=(2, 2, 2)), nnx.Rngs(0))
    h = 0.1 * jax.random.normal(jax.random.key(0), (512, 3))
    codes, indices = quantizer.quantize_codes(h)
    assert set(np.asarray(indices).tolist()) == set(range(8))
    np.testing.assert_allclose(np.mean(np.asarray(codes) == -1.0, axis=0), 0.5, atol=0.1)
    gradient = jax.grad(lambda h: quantizer.quantize_codes(h)[0].sum())(jnp.zeros((1, 3)))
    assert np.all(np.asarray(gradient) > 0.4)


def test_code_button_report_on_a_perfect_and_a_useless_code():
    buttons = np.array([0, 0, 1, 1, 2, 2, 0, 0])
    perfect = code_button_report(buttons.copy(), buttons, 8, ACTION_NAMES)
    assert perfect["purity"] == 1.0
    np.testing.assert_allclose(perfect["mutual_information_bits"], perfect["button_entropy_bits"])
    np.testing.assert_allclose(
        perfect["button_entropy_bits"], -(0.5 * np.log2(0.5) + 2 * 0.25 * np.log2(0.25))
    )
    assert perfect["purity_chance"] < perfect["purity"]
    one_code = code_button_report(np.zeros(8, np.int64), buttons, 8, ACTION_NAMES)
    assert one_code["purity"] == 0.5 == one_code["majority_button_fraction"] == one_code["purity_chance"]
    assert one_code["mutual_information_bits"] == 0.0
    # Unknown buttons are left out.
    partial = code_button_report(buttons.copy(), np.where(buttons == 2, -1, buttons), 8, ACTION_NAMES)
    assert partial["pairs_with_buttons"] == 6 and partial["purity"] == 1.0


def test_no_action_code():
    codes = np.array([3, 3, 3, 1, 3, 2, 2, 5])
    identical = np.array([True, True, True, True, False, False, False, False])
    report = no_action_report(codes, identical, 8)
    assert report["no_action_code"] == 3 and report["identical_to_no_action"] == 0.75
    assert report["changing_to_no_action"] == 0.25 and report["identical_pairs"] == 4


def test_buttons_in_effect_carry_a_press_over_the_next_steps(tmp_path):
    from data.pairs import FrameGroups

    logged = ["up", "noop", "noop", "noop", "noop", "left", "noop"]
    for run in range(2):
        write_walk_run(tmp_path / f"run_{run:02d}", logged, seed=run)
    groups = FrameGroups.from_root(tmp_path, show_progress=False)
    assert [ACTION_NAMES[b] for b in groups.buttons[:7, 0]] == logged
    effect = buttons_in_effect(groups.buttons[:, 0], groups, window=3)
    expected = ["up", "up", "up", "noop", "noop", "left", "left"]
    # The second run starts over: run 0's last press does not leak into it.
    assert [ACTION_NAMES[b] for b in effect] == expected * 2


def test_train_lam_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    for run in range(3):
        buttons = list(rng.choice(list(MOVES), size=24))
        write_walk_run(tmp_path / "frames" / f"run_{run:02d}", buttons, seed=run)
    args = train_lam.Args(
        data=tmp_path / "frames",
        out_dir=tmp_path / "out",
        steps=30,
        batch_size=8,
        log_every=15,
        channels=(8, 16),
        action_dim=8,
        pool=4,
        replace_every=10,
    )
    report = train_lam.main(args)
    model = load_lam(tmp_path / "out" / "lam.pkl")
    assert model.cfg.quantizer.kind == "nsvq" and model.cfg.vocab_size == 8
    assert load_checkpoint(tmp_path / "out" / "lam.pkl", "lam")["step"] == 30
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [15, 30]
    assert {"changed_mse", "unchanged_mse", "perplexity", "code_share", "codes_replaced"} <= records[
        -1
    ].keys()
    # The held-out run has 24 pairs, all with a logged button (noop included).
    assert report["pairs"] == report["logged_button"]["pairs_with_buttons"] == 24
    assert report["eval_training_action_changed_mse"] >= 0.0 and report["eval_copy_changed_mse"] > 0.0
    for part in ("logged_button", "button_in_effect"):
        assert sum(map(sum, report[part]["table"])) == 24
        assert 0.0 <= report[part]["purity_chance"] <= 1.0 and 0.0 <= report[part]["purity"] <= 1.0
    assert (tmp_path / "out" / "lam_report.md").read_text().startswith("# Latent actions (nsvq, 8 codes)")
    again = train_lam.main(
        train_lam.Args(data=tmp_path / "frames", out_dir=tmp_path / "out", eval_only=True, batch_size=8)
    )
    assert again["pairs"] == 24 and sum(again["code_counts"]) == 24  # from the saved (bf16) weights


def test_train_lam_refuses_a_bad_checkpoint(tmp_path):
    write_walk_run(tmp_path / "frames" / "run_00", ["up", "down"] * 4, seed=0)
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(SystemExit, match="--checkpoint"):
        train_lam.main(
            train_lam.Args(
                data=tmp_path / "frames",
                eval_only=True,
                checkpoint=tmp_path / "bad.pkl",
                out_dir=tmp_path / "out",
                holdout_run="",
            )
        )


def test_video_tokenizer_shapes_causality_and_round_trip(tmp_path):
    from models.checkpoint import params_of, save_checkpoint
    from models.video_tokenizer import (
        VideoTokenizer,
        VideoTokenizerConfig,
        load_video_tokenizer,
        video_tokenizer_loss,
    )
    from models.vqvae import VQVAEConfig

    frame = VQVAEConfig(
        embed_dim=8,
        encoder_channels=(8, 8, 8, 8),
        res_blocks=0,
        quantizer=QuantizerConfig(kind="vq", codebook_size=16),
    )
    cfg = VideoTokenizerConfig(frame=frame, num_frames=3)
    model = VideoTokenizer(cfg, rngs=nnx.Rngs(0))
    clips = np.stack([walk(["right", "down"]), walk(["left", "up"])])  # (2, 3, 144, 160, 3)
    recon, tokens, _ = model(clips, None)
    assert tokens.shape == (2, 3, 9, 10) == (2, *cfg.token_shape) and recon.shape == clips.shape[:2] + (
        144,
        160,
        3,
    )
    # Causal in time: changing the last frame leaves the earlier frames' latents alone.
    changed = clips.copy()
    changed[:, 2] = 255 - changed[:, 2]
    before, after = model.latents(clips), model.latents(changed)
    np.testing.assert_allclose(before[:, :2], after[:, :2], atol=1e-6)
    assert not np.allclose(before[:, 2], after[:, 2])
    loss, metrics = video_tokenizer_loss(model, clips, None)
    assert int(metrics["code_counts"].sum()) == 2 * 3 * 90 and np.isfinite(float(loss))
    with pytest.raises(ValueError, match="num_frames"):
        model.latents(clips[:, :2])
    save_checkpoint(
        tmp_path / "video.pkl", kind="video_tokenizer", config=cfg, params=params_of(model), step=1
    )
    assert load_video_tokenizer(tmp_path / "video.pkl").cfg == cfg


def test_train_video_tokenizer_runs(tmp_path):
    import train_video_tokenizer

    for run in range(2):
        write_walk_run(
            tmp_path / "frames" / f"run_{run:02d}", ["right", "down", "noop", "left"] * 3, seed=run
        )
    summary = train_video_tokenizer.main(
        train_video_tokenizer.Args(
            data=tmp_path / "frames",
            out_dir=tmp_path / "out",
            num_images_in_video=3,
            epochs=1,
            batch_size=2,
            size="tiny",
        )
    )
    assert summary["epoch"] == 1 and np.isfinite(summary["eval_recon_mse"])
    assert (tmp_path / "out" / "video_tokenizer.pkl").is_file() and (
        tmp_path / "out" / "recon_grid.png"
    ).is_file()
