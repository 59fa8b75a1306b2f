"""Phase 3 (train_with_cnn_reward.py and training/): PPO pieces, reward, curriculum and exact resume.

Everything runs at tiny sizes on the embedded game with the serial VecGameBoy backend."""

import dataclasses
import hashlib
import io
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import evaluate_policy
import train_with_cnn_reward as ppo
from bench import saved_states
from training.entropy_watch import EntropyWatch
from training.ppo import PPOState, compute_gae, make_update, return_filter_mask
from training.progress import (
    LearnedProgress,
    ProgressReward,
    ProgressSettings,
    ended_frames,
    load_progress,
    settings_of_run,
)
from training.rollout import EnvGroup, Runner


def python_gae(rewards, values, dones, last_value, gamma, lam):
    num_steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    next_advantage = np.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(num_steps)):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_advantage = delta + gamma * lam * not_done * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def test_gae_matches_python_loop():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(37, 5)).astype(np.float32)
    values = rng.normal(size=(37, 5)).astype(np.float32)
    dones = (rng.random((37, 5)) < 0.1).astype(np.float32)
    last_value = rng.normal(size=5).astype(np.float32)
    expected_adv, expected_ret = python_gae(rewards, values, dones, last_value, 0.99, 0.95)
    adv, ret = compute_gae(
        jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(dones), jnp.asarray(last_value), 0.99, 0.95
    )
    np.testing.assert_allclose(adv, expected_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected_ret, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keep_fraction", [0.8, 0.5, 0.25, 1.0])
def test_return_filter_keeps_exactly_the_top_fraction(keep_fraction):
    rng = np.random.default_rng(1)
    num_steps, num_envs = 16, 5
    dones = np.zeros((num_steps, num_envs), np.float32)
    dones[[3, 9], 0] = 1  # env 0: 3 segments; env 2: 2 segments; others: 1 each
    dones[7, 2] = 1
    rewards = rng.normal(size=(num_steps, num_envs)).astype(np.float32)
    segments = [(0, 0, 4), (0, 4, 10), (0, 10, 16), (1, 0, 16), (2, 0, 8), (2, 8, 16), (3, 0, 16), (4, 0, 16)]
    assert len(segments) == 8
    returns = np.array([rewards[a:b, env].sum() for env, a, b in segments])

    mask, kept, total = return_filter_mask(jnp.asarray(rewards), jnp.asarray(dones), keep_fraction)
    mask = np.asarray(mask)
    num_keep = round(keep_fraction * 8)
    assert int(total) == 8 and int(kept) == num_keep
    best = set(np.argsort(-returns)[:num_keep])
    for index, (env, a, b) in enumerate(segments):
        expected = 1.0 if index in best else 0.0
        assert (mask[a:b, env] == expected).all(), (index, keep_fraction)


def test_entropy_watch_warns_after_a_streak_above_99_percent():
    watch = EntropyWatch(num_actions=8, patience=3)
    max_entropy = np.log(8)
    fractions, warnings = zip(
        *(watch(f * max_entropy) for f in (0.995, 0.999, 0.98, 0.995, 0.996, 0.999, 0.999))
    )
    np.testing.assert_allclose(fractions, (0.995, 0.999, 0.98, 0.995, 0.996, 0.999, 0.999))
    # The 0.98 breaks the first streak; the second reaches 3 at the sixth call, and warns once.
    assert [w is not None for w in warnings] == [False, False, False, False, False, True, False]
    assert "99%" in warnings[5]


def test_update_makes_advantaged_actions_likelier_and_skips_masked_steps():
    """One jitted update on a tiny VQ policy: the action with positive advantage gains
    probability, and steps the return filter dropped have no effect."""
    import optax
    from flax import nnx

    from models.policy import PolicyConfig, make_policy, trainable_filter
    from models.quantizers import QuantizerConfig
    from models.transformer import TransformerConfig
    from models.vqvae import VQVAEConfig

    cfg = PolicyConfig(
        num_actions=4,
        encoder=VQVAEConfig(
            embed_dim=8, encoder_channels=(4, 4, 8, 8), quantizer=QuantizerConfig(codebook_size=8)
        ),
        transformer=TransformerConfig(vocab_size=8, embed_dim=8, num_layers=1, num_heads=2),
    )
    graphdef, params, frozen = nnx.split(make_policy(cfg, nnx.Rngs(0)), trainable_filter(cfg), ...)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 8, (32, 9, 10)), jnp.int32)
    logits, _ = nnx.merge(graphdef, params, frozen)(tokens)
    log_probs = jax.nn.log_softmax(logits)
    actions = jnp.asarray(np.arange(32) % 4, jnp.int32)
    batch = {
        "obs": tokens,
        "actions": actions,
        "log_probs": jnp.take_along_axis(log_probs, actions[:, None], axis=-1)[:, 0],
        "advantages": jnp.where(actions == 2, 1.0, -1.0),
        "returns": jnp.zeros(32),
        "mask": jnp.ones(32),
    }
    tx = optax.adam(1e-2)
    update = make_update(
        graphdef, frozen, tx, num_minibatches=2, update_epochs=2, clip_coef=0.2, vf_coef=0.5, ent_coef=0.0
    )

    def probability_of_action_2_after(batch):
        state = PPOState(jax.tree.map(jnp.copy, params), tx.init(params))
        state, metrics = update(state, batch, jax.random.PRNGKey(0))
        assert np.isfinite(metrics["losses/policy"])
        new_logits, _ = nnx.merge(graphdef, state.params, frozen)(tokens)
        return float(jax.nn.softmax(new_logits)[:, 2].mean())

    before = float(jax.nn.softmax(logits)[:, 2].mean())
    after = probability_of_action_2_after(batch)
    assert after > before + 0.05
    # The same batch with action 2's steps filtered out: nothing favours action 2 any more.
    masked = {**batch, "mask": (actions != 2).astype(jnp.float32)}
    assert probability_of_action_2_after(masked) < after - 0.05


def test_vit_policy_patches_cover_the_frame():
    """The legacy ViT policy: frames in, logits and values out, and every patch matters."""
    from flax import nnx

    from models.policy import PolicyConfig, make_policy
    from models.transformer import TransformerConfig

    cfg = PolicyConfig(
        kind="vit",
        num_actions=8,
        transformer=TransformerConfig(vocab_size=8, embed_dim=8, num_layers=1, num_heads=2),
    )
    policy = make_policy(cfg, nnx.Rngs(0))
    frames = np.zeros((2, 144, 160, 3), np.uint8)
    assert policy.observe(frames) is frames
    logits, values = policy(frames)
    assert logits.shape == (2, 8) and values.shape == (2,)
    frames[1, -16:, -16:] = 255  # only the bottom-right patch differs
    logits, _ = policy(frames)
    assert np.abs(np.asarray(logits[1] - logits[0])).max() > 0


# ---------------------------------------------------------------------------
# On the embedded game, with a tiny real reward model.
# ---------------------------------------------------------------------------

from flax import nnx  # noqa: E402

from data.speedrun_bot import Bot  # noqa: E402
from envs.archive import CellArchive, cell_keys, screen_keys  # noqa: E402
from envs.curriculum import BACKWARD_SUCCESSES, BackwardChain, CurriculumPool  # noqa: E402
from envs.games import EMUQUEST_ROM, EmuQuest  # noqa: E402
from envs.vec_gameboy import VecGameBoy  # noqa: E402
from models.checkpoint import (  # noqa: E402
    config_from_dict,
    load_checkpoint,
    params_of,
    restore_params,
    save_checkpoint,
)
from models.policy import PolicyConfig, make_policy  # noqa: E402
from models.quantizers import QuantizerConfig  # noqa: E402
from models.resnet import ResNetConfig  # noqa: E402
from models.reward import RewardConfig, RewardModel  # noqa: E402
from models.transformer import TransformerConfig  # noqa: E402
from models.vqvae import VQVAEConfig  # noqa: E402

TINY_REWARD = RewardConfig(
    backbone="resnet34", resnet=ResNetConfig(stage_sizes=(1, 1), widths=(8, 16), stem_width=8, norm_groups=4)
)


@pytest.fixture(scope="session")
def reward_path(tmp_path_factory):
    """A tiny, randomly initialised ResNet reward model saved as a real 'reward' checkpoint."""
    path = tmp_path_factory.mktemp("reward") / "reward_tiny.pkl"
    model = RewardModel(TINY_REWARD, rngs=nnx.Rngs(0))
    save_checkpoint(path, kind="reward", config=TINY_REWARD, params=params_of(model), step=0)
    return path


@pytest.fixture(scope="session")
def learned(reward_path):
    return load_progress(str(reward_path))


class ScoreOfFrame:
    """A stand-in one-frame reward model: score = fn(frames)."""

    bag_size = 0

    def __init__(self, fn):
        self.score = fn


def tiny_env(**kwargs):
    return VecGameBoy(EMUQUEST_ROM, num_envs=3, backend="serial", frame_skip=8, press_frames=4, **kwargs)


def test_a_runs_reward_settings_are_read_from_its_ppo_flags():
    flags = dataclasses.asdict(ppo.Args(reward_interval=4, reward_scale=0.35, progress_baseline="best",
                                        route_tolerance=2, route_scene_change=20, route_text_barrier=8,
                                        novelty_bonus=0.05))  # fmt: skip
    assert settings_of_run(flags) == ProgressSettings(
        interval=4, scale=0.35, baseline="best", route_tolerance=2, route_scene_change=20,
        route_text_barrier=8, novelty=0.05,
    )  # fmt: skip
    # A run saved before a flag existed scored with its default; overrides replace any setting.
    for name in ("route_scene_change", "route_text_barrier", "reward_interval", "novelty_bonus"):
        del flags[name]
    assert settings_of_run(flags, time_penalty=0.0) == ProgressSettings(
        scale=0.35, baseline="best", route_tolerance=2, time_penalty=0.0
    )


def test_reward_is_the_model_delta_at_the_interval_minus_the_penalty(learned):
    interval, penalty = 4, 0.01
    rng = np.random.default_rng(0)
    with tiny_env(max_steps=10) as env:
        obs, _ = env.reset(seed=0)
        progress = ProgressReward(learned, env.num_envs, ProgressSettings(interval, penalty))
        progress.start(obs)
        baseline_frames = [None] * env.num_envs  # each env's last scored frame in this episode
        deltas = []
        for step in range(1, 17):
            actions = np.full(env.num_envs, 7 if step == 1 else 0)  # START, then wait
            actions[1] = rng.integers(0, env.num_actions)
            obs, _, terminated, truncated, info = env.step(actions)
            done = terminated | truncated
            rewards, scores = progress(obs.copy(), done, last_frames=ended_frames(info))
            if step % interval and done.any():  # an episode's last frame is paid, scored step or not
                assert scores is None and done.all()
                last = learned.score(np.stack(list(ended_frames(info).values())))
                previous = learned.score(np.stack(baseline_frames))
                np.testing.assert_allclose(rewards, last - previous - penalty, rtol=1e-5, atol=1e-6)
                deltas.extend(rewards + penalty)
            elif step % interval:
                assert scores is None
                np.testing.assert_allclose(rewards, -penalty)
            else:
                now = learned.score(obs.copy())
                for i in range(env.num_envs):
                    if baseline_frames[i] is None or done[i]:  # an episode's first scored frame earns nothing
                        np.testing.assert_allclose(rewards[i], -penalty)
                    else:
                        expected = now[i] - learned.score(baseline_frames[i][None])[0] - penalty
                        np.testing.assert_allclose(rewards[i], expected, rtol=1e-5, atol=1e-6)
                        deltas.append(rewards[i] + penalty)
                    baseline_frames[i] = obs[i].copy()
            for i in np.flatnonzero(done):  # max_steps=10: the episode restarts without a baseline
                baseline_frames[i] = None
        # Scored at 4 (baselines), 8 (deltas), 10 (the episodes' last frames), 12 (episodes restarted
        # at 10: baselines), 16 (deltas).
        assert len(deltas) == 3 * env.num_envs
        assert np.abs(deltas).max() > 1e-4  # frames changed and the model saw it: not a trivial pass


@pytest.mark.parametrize(
    "baseline, expected",
    [
        ("last", [-1.0, 2.0, 0.0]),  # R(now) - R(previous scored frame)
        ("best", [0.0, 1.0, 0.0]),  # gain over the episode's best, never negative
    ],
)
def test_progress_baseline_last_or_episode_best(baseline, expected):
    """One env whose 'frames' carry their score. The first scored frame of each episode
    (after start, and after the reset at score 5) is only a baseline."""
    progress = ProgressReward(
        ScoreOfFrame(lambda frames: frames[:, 0].astype(np.float32)),
        1,
        ProgressSettings(interval=1, time_penalty=0.5, baseline=baseline),
    )
    progress.start(np.zeros((1, 1), np.float32))
    rewards = []
    for score, done in [(2, False), (1, False), (3, False), (3, False), (5, True), (4, False), (6, False)]:
        reward, _ = progress(np.array([[score]], np.float32), np.array([done]))
        rewards.append(float(reward[0]) + 0.5)
    # The reset step's frame is not a baseline either: the next episode's starts at 4, so 6 - 4.
    np.testing.assert_allclose(rewards, [0.0, *expected, 0.0, 0.0, 2.0])


def test_a_reset_frame_sets_no_baseline():
    """A power-on frame the model scores high (9) must not hide the progress after it (-7 -> -5)."""
    progress = ProgressReward(
        ScoreOfFrame(lambda frames: frames[:, 0].astype(np.float32)),
        1,
        ProgressSettings(interval=1, time_penalty=0.0, baseline="best"),
    )
    progress.start(np.zeros((1, 1), np.float32))
    steps = [(-7, False), (-5, False), (9, True), (-7, False), (-5, False)]
    rewards = [float(progress(np.array([[s]], np.float32), np.array([d]))[0][0]) for s, d in steps]
    assert rewards == [0.0, 2.0, 0.0, 0.0, 2.0]


class TokensAreFrames:
    """A stand-in bag reward: each 'frame' (N, 1) is its own token id; the score counts the bag."""

    bag_size = 8

    def tokens(self, frames):
        return frames

    def score_tokens(self, tokens, bags):
        return bags.sum(axis=1).astype(np.float32)


def test_bags_see_every_step_restart_on_done_and_start_from_curriculum_bags():
    progress = ProgressReward(TokensAreFrames(), 2, ProgressSettings(interval=2, time_penalty=0.0))
    progress.start(np.array([[0], [0]]))
    seen = lambda: [set(np.flatnonzero(bag)) for bag in progress.bags]  # noqa: E731
    no = np.array([False, False])
    assert progress(np.array([[1], [1]]), no)[1] is None and seen() == [
        {0, 1},
        {0, 1},
    ]  # unscored steps still see
    # Env 1's episode ends and it restarts on a curriculum state whose bag holds {5, 6}.
    curriculum_bag = np.zeros(8, np.uint8)
    curriculum_bag[[5, 6]] = 1
    start_states = {1: {"bag": curriculum_bag, "memory": None}}
    rewards, scores = progress(np.array([[2], [0]]), np.array([False, True]), start_states=start_states)
    assert (
        seen() == [{0, 1, 2}, {0, 5, 6}] and list(scores) == [3, 3] and list(rewards) == [0, 0]
    )  # baselines
    # Tokens the caller already has (the policy's) are used instead of encoding the frames.
    progress(np.array([[3], [3]]), no, tokens=np.array([[7], [7]]))
    rewards, scores = progress(np.array([[4], [4]]), no)
    # Env 0 gains over its baseline; env 1's new episode has its first scored frame, a baseline.
    assert seen() == [{0, 1, 2, 4, 7}, {0, 4, 5, 6, 7}] and list(rewards) == [5 - 3, 0]
    bag = progress.episode_state(0)["bag"]
    bag[:] = 0
    assert seen()[0] == {0, 1, 2, 4, 7}  # episode_state() copies
    # Env 0's episode ends on an unscored step: its last frame (token 3) joins its bag and is paid.
    rewards, _ = progress(np.array([[0], [0]]), np.array([True, False]), last_frames={0: np.array([3])})
    assert list(rewards) == [6 - 5, 0] and seen()[0] == {0}
    again = ProgressReward(TokensAreFrames(), 2, ProgressSettings(interval=2, time_penalty=0.0))
    again.load_state_dict(progress.state_dict())
    np.testing.assert_array_equal(again.bags, progress.bags)
    assert (
        ProgressReward(ScoreOfFrame(lambda f: f), 2, ProgressSettings(1, 0.0)).episode_state(0)["bag"] is None
    )  # one-frame rewards keep none


def test_curriculum_saves_new_highs_and_resets_from_them(learned):
    pool = CurriculumPool(capacity=4)
    with tiny_env(max_steps=1000, curriculum=pool, pool_prob=1.0) as env:
        group = EnvGroup(env, 0, ProgressReward(learned, env.num_envs, ProgressSettings(1, 0.0)))
        runner = Runner([group], pool, seed=0)
        runner.restart(0)
        assert len(pool) == 0
        # Step by hand so we know each frame.
        obs, *_ = env.step(np.full(env.num_envs, 7))
        saved_frame = obs[1].copy()
        scores = np.array([0.5, 2.0, 1.0], np.float32)
        memory = group.memory  # (3, 0): a memoryless policy
        [(state, score, payload, key)] = runner._new_high(group, scores, memory)
        assert score == 2.0 and key is None
        # A one-frame reward without the novelty bonus, and a policy without memory, keep nothing more.
        assert payload == {"bag": None, "route": None, "screens": None, "memory": None}
        assert runner._new_high(group, scores - 1.0, memory) == []  # not a new high: nothing saved
        [(_, higher, _, _)] = runner._new_high(group, np.array([0.0, 0.0, 3.0], np.float32), memory)
        assert higher == 3.0
        pool.add(state, score, payload)
        # With pool_prob 1, a reset starts every env from pool states.
        runner.restart(1)
        for env_id in range(env.num_envs):
            np.testing.assert_array_equal(runner.obs[env_id], saved_frame)


@pytest.fixture(scope="module")
def beside_the_final_door() -> tuple[bytes, str]:
    """A saved state of EmuQuest one step from entering the final room, and the button that enters it."""
    bot = Bot(EMUQUEST_ROM, 0, 0.0, 0.0, 1, 0, 6000, on_frame=lambda i, rgb, buttons: None)
    game = EmuQuest()
    final_door = game.WARPS[game.FOREST][game.FINAL]
    moves = {(0, 1): "up", (1, 0): "left", (-1, 0): "right"}  # to the door from beside it
    try:
        bot.boot()
        memory = bot.memory
        while not (
            memory[game.MAP_ID] == game.FOREST
            and memory[game.WALK] == 0
            and (memory[game.X] - final_door[0], memory[game.Y] - final_door[1]) in moves
        ):
            assert bot.frame < 6000, "the bot did not get beside the final room's door"
            bot.advance()
        move = moves[(memory[game.X] - final_door[0], memory[game.Y] - final_door[1])]
        state = io.BytesIO()
        bot.pyboy.save_state(state)
    finally:
        bot.close()
    return state.getvalue(), move


def test_the_rollout_counts_the_milestone_of_an_episode_that_finishes_the_game(beside_the_final_door):
    """Entering the final room ends the game and the env resets in the same step, so its RAM already
    shows the next episode; the rollout's milestone count comes from the ended episode."""
    state, move = beside_the_final_door
    game = EmuQuest()
    score_fn = ScoreOfFrame(lambda frames: frames.reshape(len(frames), -1).mean(axis=1).astype(np.float32))
    with VecGameBoy(EMUQUEST_ROM, num_envs=1, backend="serial", initial_state=state) as env:
        runner = Runner(
            [EnvGroup(env, 0, ProgressReward(score_fn, 1, ProgressSettings(1, 0.0)))], None, seed=0
        )
        runner.restart(0)

        def policy_step(frames, first, memory, key, progress):
            action = np.full(len(frames), env.action_names.index(move))
            return frames, action, np.zeros(len(frames)), np.zeros(len(frames)), memory

        batch, _, stats = runner.rollout(policy_step, jax.random.key(0), num_steps=2)
        runner.close()
    assert np.asarray(batch["dones"])[0].all()  # the first step entered the final room
    assert stats["rollout/milestones_max"] == game.num_milestones == 7


@pytest.mark.parametrize("goal, moved_back", [(10.0, True), (10.5, False)])
def test_episodes_that_reach_the_goal_from_the_pointer_move_it_back(beside_the_final_door, goal, moved_back):
    """A chain whose last entry is one step from the final room, with a reward that scores every frame
    10 but scores none on a step (interval 100): only the ended episodes' last frames reach the goal.
    Each step enters the room from the pointer's entry; the second success moves it back."""
    state, move = beside_the_final_door
    chain = BackwardChain(capacity=4, goal=goal)
    payload = {"bag": None, "route": None, "screens": None, "memory": None}
    chain.add(state, 0.0, payload)
    chain.add(state, 5.0, payload)
    score_fn = ScoreOfFrame(lambda frames: np.full(len(frames), 10.0, np.float32))
    with VecGameBoy(
        EMUQUEST_ROM, num_envs=1, backend="serial", initial_state=state, curriculum=chain, pool_prob=1.0
    ) as env:
        group = EnvGroup(env, 0, ProgressReward(score_fn, 1, ProgressSettings(100, 0.0)))
        runner = Runner([group], chain, seed=0)
        runner.restart(0)
        assert group.start_score[0] == 5.0  # pool_prob 1: the episode began on the pointer's entry

        def policy_step(frames, first, memory, key, progress):
            action = np.full(len(frames), env.action_names.index(move))
            return frames, action, np.zeros(len(frames)), np.zeros(len(frames)), memory

        _, _, stats = runner.rollout(policy_step, jax.random.key(0), num_steps=BACKWARD_SUCCESSES)
        runner.close()
    assert stats["rollout/episodes_ended"] == BACKWARD_SUCCESSES
    if moved_back:
        assert chain.start() == 0 and chain.outcomes == []
        assert (stats["curriculum/backward_start"], stats["curriculum/backward_score"]) == (0, 0.0)
    else:  # no success: the pointer still follows the chain's last entry, with nothing recorded
        assert chain.start() == 1 and chain.start_score == np.inf and chain.outcomes == []


def test_a_reset_frame_is_never_a_curriculum_state():
    """Episodes end on scored steps (max_steps 2, interval 1), where the env already shows the next
    episode's power-on frame. A score that rates that frame highest must not put it in the pool."""
    first_frame_score = 1e6
    score_fn = ScoreOfFrame(
        lambda frames: np.where(
            frames.reshape(len(frames), -1).std(axis=1) == 0,
            first_frame_score,
            frames.reshape(len(frames), -1).mean(axis=1),
        ).astype(np.float32)
    )
    pool = CurriculumPool(capacity=16)
    with tiny_env(max_steps=2, curriculum=pool, pool_prob=0.0) as env:
        runner = Runner(
            [EnvGroup(env, 0, ProgressReward(score_fn, env.num_envs, ProgressSettings(1, 0.0)))], pool, seed=0
        )
        runner.restart(0)
        # power-on frames are blank: the top score
        assert score_fn.score(runner.obs).min() == first_frame_score

        def policy_step(frames, first, memory, key, progress):
            return (frames, np.full(len(frames), 7), np.zeros(len(frames)), np.zeros(len(frames)), memory)

        batch, _, stats = runner.rollout(policy_step, jax.random.key(0), num_steps=6)
        runner.close()
    assert stats["rollout/episodes_ended"] == 3 * env.num_envs
    assert len(pool) > 0 and max(pool.scores) < first_frame_score


def test_archive_saves_each_new_cell_once_counts_sightings_and_resets_into_it():
    """A rollout from power-on with random presses: every cell it reaches is saved once, each cell's
    seen count is the number of scored frames in it, and a state loaded back shows a frame of its cell."""
    band = 0.5
    archive = CellArchive(capacity=64, band=band)
    score_fn = ScoreOfFrame(
        lambda frames: frames.reshape(len(frames), -1).mean(axis=1).astype(np.float32) / 9
    )
    with tiny_env(max_steps=9, curriculum=archive, pool_prob=0.0) as env:
        progress = ProgressReward(score_fn, env.num_envs, ProgressSettings(1, 0.0))
        runner = Runner([EnvGroup(env, 0, progress)], archive, seed=0)
        runner.restart(0)
        rng = np.random.default_rng(0)

        def policy_step(frames, first, memory, key, progress):
            zeros = np.zeros(len(frames))
            return frames.copy(), rng.integers(0, 8, len(frames)), zeros, zeros, memory

        batch, _, _ = runner.rollout(policy_step, jax.random.key(0), num_steps=24)
        # Every scored frame: the frame after each step (the next observation, or the last frames).
        after = np.concatenate([np.asarray(batch["obs"][1:]), runner.obs[None]])
        reached = [
            k
            for frames, done in zip(after, np.asarray(batch["dones"]))
            for k, reset in zip(cell_keys(frames, score_fn.score(frames), band), done)
            if not reset
        ]
        assert 1 < len(archive) <= len(set(reached)) and len(set(archive.keys)) == len(archive)
        assert archive.seen == [reached.count(k) for k in archive.keys]
        obs, _ = env.reset(seed=1)
        for state, k in zip(archive.states, archive.keys):
            env.load_states([0], [state])
            assert cell_keys(obs[:1], score_fn.score(obs[:1]), band)[0] == k
        runner.close()


def test_wrong_kind_reward_model_or_tokenizer_is_refused(reward_path, tmp_path):
    dynamics = tmp_path / "dynamics.pkl"
    save_checkpoint(dynamics, kind="dynamics", config={}, params={}, step=0)
    with pytest.raises(SystemExit, match=r"--reward-model: .*'dynamics' checkpoint, expected 'reward'"):
        ppo.main(ppo.Args(reward_model=str(dynamics), num_workers=0, num_envs=1, out_dir=str(tmp_path)))
    with pytest.raises(
        SystemExit, match=r"--pretrained-tokenizer: .*'reward' checkpoint, expected 'encoder' or 'tokenizer'"
    ):
        ppo.main(
            ppo.Args(
                reward_model=str(reward_path),
                pretrained_tokenizer=str(reward_path),
                num_workers=0,
                num_envs=1,
                out_dir=str(tmp_path),
            )
        )


def tiny_args(reward_path, out_dir, **overrides):
    settings = dict(
        reward_model=str(reward_path),
        out_dir=str(out_dir),
        num_workers=0,
        num_envs=2,
        num_steps=8,
        num_minibatches=2,
        update_epochs=2,
        frame_skip=8,
        press_frames=4,
        max_episode_steps=12,
        reward_interval=4,
        reward_scale=10.0,
        return_filter=0.5,
        curriculum_prob=0.5,
        curriculum_capacity=4,
        embed_dim=16,
        num_layers=1,
        num_heads=2,
        encoder_channels=(4, 8, 8, 8),
        codebook_size=16,
        log_every=100,
        seed=3,
    )
    settings.update(overrides)
    return ppo.Args(**settings)


def deterministic(records):
    """Everything logged except wall-clock speeds."""
    return [{k: v for k, v in r.items() if not k.startswith("charts/")} for r in records]


def screen(*lit_blocks) -> np.ndarray:
    """A gray frame (1, 144, 160, 1), black but for these 16x16 blocks (row, col) in white."""
    frame = np.zeros((1, 144, 160, 1), np.uint8)
    for row, col in lit_blocks:
        frame[0, 16 * row : 16 * row + 16, 16 * col : 16 * col + 16] = 255
    return frame


def test_the_novelty_bonus_pays_each_screen_once_per_episode():
    """One env, scores that never change (only the bonus and the penalty remain): a screen pays the
    first time its episode shows it, the first frame of an episode pays nothing, and an episode on a
    curriculum state starts with the screens that state's episode had shown."""
    settings = ProgressSettings(interval=1, time_penalty=0.25, baseline="best", novelty=2.0)
    progress = ProgressReward(ScoreOfFrame(lambda frames: np.zeros(len(frames), np.float32)), 1, settings)
    progress.start(screen())
    a, b, c = screen((0, 0)), screen((4, 5)), screen((8, 9))
    no, yes = np.array([False]), np.array([True])
    rewards = [
        progress(frame, done)[0][0] for frame, done in [(a, no), (b, no), (a, no), (screen(), no), (b, no)]
    ]
    assert rewards == [1.75, 1.75, -0.25, -0.25, -0.25]
    moved = screen((4, 5))
    moved[0, 64:80, 80:88] = 0  # half the block lit: the same 9x10 cell at another level
    assert progress(moved, no)[0][0] == 1.75
    saved = progress.episode_state(0)["screens"]
    assert saved.shape == (4, 90) and saved.dtype == np.uint8
    saved[:] = 0
    assert progress(b, no)[0][0] == -0.25  # episode_state() copies
    # A new episode from power-on shows a again and is paid; one on a curriculum state that had shown
    # a, b and c is paid for neither, and its first frame c was not new to it anyway.
    assert [progress(f, d)[0][0] for f, d in [(c, yes), (a, no)]] == [-0.25, 1.75]
    shown = np.stack([np.frombuffer(key, np.uint8) for key in screen_keys(np.concatenate([a, b, c]))])
    assert progress(c, yes, start_states={0: {"screens": shown}})[0][0] == -0.25
    assert [progress(f, no)[0][0] for f in (a, b, screen((1, 1)))] == [-0.25, -0.25, 1.75]
    plain = ProgressReward(ScoreOfFrame(lambda f: f), 1, ProgressSettings(1, 0.0))
    assert plain.screens is None and plain.episode_state(0)["screens"] is None


@pytest.mark.parametrize(
    "cells, mastery, memory, burn_in",
    [(False, False, 0, 0), (True, False, 8, 0), (False, True, 8, 6)],
    ids=["new-highs", "cell-archive-and-memory", "thinned-mastery-memory-burn-in"],
)
def test_resume_continues_exactly(reward_path, tmp_path, cells, mastery, memory, burn_in):
    """Run 2N iterations straight; separately resume from the checkpoint at N (in a fresh
    directory, as after a kill) and continue to 2N: the logged metrics must match exactly."""
    curriculum = dict(
        curriculum_cells=cells,
        curriculum_mastery=mastery,
        cell_band=0.01,
        curriculum_capacity=8 if cells else 4,
        memory=memory,
        memory_burn_in=burn_in,
        curriculum_thin=burn_in > 0,  # one case for both: each run is ~10 s
    )
    straight = ppo.main(
        tiny_args(reward_path, tmp_path / "straight", iterations=4, save_every=2, env_groups=2, **curriculum)
    )
    assert [r["iteration"] for r in straight] == [1, 2, 3, 4]
    assert straight[-1]["curriculum/pool_size"] > 0  # the pool takes part in what must be restored
    final = load_checkpoint(tmp_path / "straight" / "policy_final.pkl", "policy")
    pool = final["train_state"]["runner"]["pool"]
    if mastery:  # episodes from the pool's states were scored, and the checkpoint keeps their outcomes
        assert len(pool["outcomes"]) == len(pool["states"]) and any(pool["outcomes"])
        assert "curriculum/mastered_states" in straight[-1]
        with pytest.raises(SystemExit, match="--curriculum-mastery is a rule for the pool of new highs"):
            ppo.main(tiny_args(reward_path, tmp_path / "bad", curriculum_mastery=True, curriculum_cells=True))
    if burn_in:  # states keep the observations before them (at most the window), and resets replayed them
        histories = [payload["history"] for payload in pool["payloads"] if payload.get("history") is not None]
        assert histories and all(1 <= len(h) <= burn_in and h.shape[1:] == (9, 10) for h in histories)
        assert any(len(h) == burn_in for h in histories)
        assert sum(r["charts/burn_in_seconds"] for r in straight) > 0
        assert pool["thin"]
        with pytest.raises(SystemExit, match="--memory-burn-in must be >= 0, and above 0 it needs --memory"):
            ppo.main(tiny_args(reward_path, tmp_path / "bad", memory_burn_in=4))
        with pytest.raises(SystemExit, match="--curriculum-thin is a rule for the pool of new highs"):
            ppo.main(tiny_args(reward_path, tmp_path / "bad", curriculum_thin=True, curriculum_cells=True))
        # bench/saved_states.py also plays each state with the memory the burn-in rebuilds.
        table = saved_states.main(
            saved_states.Args(
                policy=tmp_path / "straight" / "policy_final.pkl", episodes=1, steps=2, power_on_steps=2,
                num_workers=0, output=tmp_path / "saved_states.md",
            )
        )  # fmt: skip
        assert "stored / empty / power-on / burn-in" in table
        rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
        assert len(rows) == len(pool["states"]) and all(
            len(row.split("|")[5].split("/")) == 4 for row in rows
        )

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "policy_2.pkl").write_bytes((tmp_path / "straight" / "policy_2.pkl").read_bytes())
    # The killed run had logged past its checkpoint; those lines must be dropped and redone.
    (resumed_dir / "metrics.jsonl").write_text((tmp_path / "straight" / "metrics.jsonl").read_text())
    resumed = ppo.main(
        tiny_args(
            reward_path,
            resumed_dir,
            iterations=4,
            save_every=2,
            env_groups=2,
            resume=str(resumed_dir / "policy_2.pkl"),
            **curriculum,
        )
    )
    assert [r["iteration"] for r in resumed] == [3, 4]
    assert deterministic(resumed) == deterministic(straight[2:])
    logged = [json.loads(line) for line in (resumed_dir / "metrics.jsonl").read_text().splitlines()]
    assert deterministic(logged) == deterministic(straight)


@pytest.fixture(scope="session")
def bag_reward(tmp_path_factory):
    """A tiny tokenizer's encoder and a seen-token reward on that encoder, as real checkpoints
    (random weights): (encoder path, reward path, tokenizer config)."""
    root = tmp_path_factory.mktemp("bag_reward")
    tokenizer = VQVAEConfig(
        embed_dim=8, encoder_channels=(4, 8, 8, 8), quantizer=QuantizerConfig(codebook_size=16)
    )
    reward = RewardModel(
        RewardConfig(backbone="vq", tokenizer=tokenizer, seen_tokens=True, head_hidden=16), rngs=nnx.Rngs(2)
    )
    save_checkpoint(
        root / "encoder.pkl", kind="encoder", config=tokenizer, params=params_of(reward.encoder), step=0
    )
    save_checkpoint(root / "reward.pkl", kind="reward", config=reward.cfg, params=params_of(reward), step=0)
    return root / "encoder.pkl", root / "reward.pkl", tokenizer


def test_a_seen_token_reward_reads_the_policys_tokens_and_resumes_exactly(
    bag_reward, tmp_path, monkeypatch, capsys
):
    """A policy on the reward's own encoder hands its tokens to the bags; encoding the frames again
    gives the same run. The bags and the curriculum states' bags are in the checkpoint, and a
    resume from it continues exactly."""
    encoder, reward, tokenizer = bag_reward
    learned = load_progress(str(reward))
    assert learned.bag_size == 16
    other = make_policy(
        PolicyConfig(
            encoder=tokenizer,
            transformer=TransformerConfig(vocab_size=16, embed_dim=16, num_layers=1, num_heads=2),
        ),
        nnx.Rngs(9),
    )
    assert not learned.reads_tokens_of(other)  # same config, other weights

    def run(out_dir, **overrides):
        return ppo.main(
            tiny_args(
                reward,
                out_dir,
                pretrained_tokenizer=str(encoder),
                iterations=4,
                save_every=2,
                env_groups=2,
                **overrides,
            )
        )

    shared = run(tmp_path / "shared")
    assert "reward: the policy's tokens" in capsys.readouterr().out
    runner_state = load_checkpoint(tmp_path / "shared" / "policy_2.pkl", "policy")["train_state"]["runner"]
    assert all(progress["bags"].sum() > 0 for progress in runner_state["progress"])
    payloads = runner_state["pool"]["payloads"]
    bags = [payload["bag"] for payload in payloads]
    assert bags and all(bag.shape == (16,) and bag.sum() > 0 for bag in bags)

    with monkeypatch.context() as patch:
        patch.setattr(LearnedProgress, "reads_tokens_of", lambda self, policy: False)
        own = run(tmp_path / "own")
    assert "reward: its own encoder" in capsys.readouterr().out
    assert deterministic(own) == deterministic(shared)

    resumed = run(tmp_path / "shared", resume=str(tmp_path / "shared" / "policy_2.pkl"))
    assert deterministic(resumed) == deterministic(shared[2:])


def test_resume_restores_the_runs_settings_and_refuses_a_different_structure(reward_path, tmp_path, capsys):
    """Resuming without repeating the flags keeps the checkpoint's return filter, curriculum and envs;
    changing the env count is refused with one line; changing a hyperparameter is printed, and a new
    curriculum temperature applies to the restored pool."""
    run = tmp_path / "run"
    straight = ppo.main(tiny_args(reward_path, run, iterations=2, save_every=1))
    assert straight[-1]["curriculum/pool_size"] > 0
    bare = ppo.Args(
        reward_model=str(reward_path), resume=str(run / "policy_1.pkl"), iterations=2, num_workers=0
    )
    resumed = ppo.main(bare)
    assert deterministic(resumed) == deterministic(straight[1:])  # every setting came back
    saved = load_checkpoint(run / "policy_final.pkl", "policy")
    assert (
        saved["config"]["args"]["return_filter"] == 0.5 and saved["train_state"]["runner"]["pool"] is not None
    )
    with pytest.raises(
        SystemExit, match=r"--num-envs 3: the checkpoint's run has 2, which a resumed run keeps"
    ):
        ppo.main(dataclasses.replace(bare, num_envs=3))
    capsys.readouterr()
    ppo.main(dataclasses.replace(bare, ent_coef=0.05, curriculum_temperature=7.0, iterations=3))
    out = capsys.readouterr().out
    assert "resume: --ent-coef 0.05 instead of the checkpoint's 0.01" in out
    # The restored pool keeps its states but is drawn at the resumed run's temperature.
    pool = load_checkpoint(run / "policy_final.pkl", "policy")["train_state"]["runner"]["pool"]
    assert pool["temperature"] == 7.0 and len(pool["states"]) > 0


def test_resume_with_curriculum_replays_the_same_frames(reward_path, tmp_path):
    """Every frame the policy sees after a resume, curriculum resets included, is the frame the
    run that never stopped saw."""

    def frames_seen(out_dir, **overrides):
        seen = []
        real = Runner.rollout

        def recording(self, policy_step, *rest):
            def step(frames, first, memory, k, progress):
                seen.append(hashlib.sha1(np.ascontiguousarray(frames).tobytes()).hexdigest())
                return policy_step(frames, first, memory, k, progress)

            return real(self, step, *rest)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Runner, "rollout", recording)
            ppo.main(
                tiny_args(reward_path, out_dir, iterations=4, save_every=2, curriculum_prob=0.9, **overrides)
            )
        return seen

    straight = frames_seen(tmp_path / "straight")
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "policy_2.pkl").write_bytes((tmp_path / "straight" / "policy_2.pkl").read_bytes())
    resumed = frames_seen(resumed_dir, resume=str(resumed_dir / "policy_2.pkl"))
    assert resumed == straight[len(straight) // 2 :]


def test_ppo_stops_at_the_first_nan_without_saving_over_the_last_policy(reward_path, tmp_path):
    with pytest.raises(
        SystemExit, match=r"PPO: .* became NaN or infinite at iteration \d+; stopped before saving"
    ):
        ppo.main(
            tiny_args(
                reward_path, tmp_path, iterations=6, save_every=100, learning_rate=1e12, max_grad_norm=1e12
            )
        )
    assert not (tmp_path / "policy_final.pkl").exists()


def test_a_nan_reward_model_is_refused(tmp_path):
    model = RewardModel(TINY_REWARD, rngs=nnx.Rngs(0))
    params = jax.tree.map(np.array, params_of(model))
    params["resnet"]["head"]["bias"][:] = np.nan
    save_checkpoint(tmp_path / "nan.pkl", kind="reward", config=TINY_REWARD, params=params, step=0)
    with pytest.raises(SystemExit, match=r"--reward-model: .*resnet/head/bias holds NaN"):
        ppo.main(tiny_args(tmp_path / "nan.pkl", tmp_path, iterations=1))


def test_ctrl_c_saves_the_policy_and_exits_with_one_line(reward_path, tmp_path, monkeypatch):
    class StopAfterTwo:
        def __init__(self):
            self.checks = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        @property
        def requested(self):
            self.checks += 1
            return self.checks >= 2

    monkeypatch.setattr(ppo, "StopRequest", StopAfterTwo)
    with pytest.raises(SystemExit, match=r"interrupted after iteration 2: saved .*policy_2.pkl; --resume"):
        ppo.main(tiny_args(reward_path, tmp_path, iterations=5, save_every=100))
    assert load_checkpoint(tmp_path / "policy_2.pkl", "policy")["train_state"]["iteration"] == 2


def test_a_dead_worker_stops_training_with_one_line(reward_path, tmp_path, monkeypatch):
    real = Runner.rollout

    def killing(self, *args, **kwargs):
        os.kill(self.groups[0].env.worker_pids[0], signal.SIGKILL)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "rollout", killing)
    with pytest.raises(
        SystemExit,
        match=r"^error: VecGameBoy worker 0 \(pid \d+, envs \d+\.\.\d+\) died \(killed by signal SIGKILL\)",
    ):
        ppo.main(tiny_args(reward_path, tmp_path, iterations=2, num_workers=1, env_groups=1))


def test_the_fast_learner_resumes_exactly(bag_reward, tmp_path):
    """Gray frames, the token cache, a pooled trunk and the update overlapped with the next rollout:
    a resumed run continues exactly as the run that never stopped (the checkpoint's rollout waits
    for its update, and so does a resumed run's first)."""
    encoder, _, _ = bag_reward
    reward = tmp_path / "reward.pkl"
    tokenizer = load_checkpoint(encoder, "encoder")
    model = RewardModel(
        RewardConfig(
            backbone="vq", tokenizer=config_from_dict(VQVAEConfig, tokenizer["config"]), head_hidden=16
        ),
        rngs=nnx.Rngs(1),
    )
    restore_params(model.encoder, tokenizer["params"])
    save_checkpoint(reward, kind="reward", config=model.cfg, params=params_of(model), step=0)
    fast = dict(pretrained_tokenizer=str(encoder), observation="gray", trunk_pool=(3, 2), overlap_update=True,
                iterations=4, save_every=2)  # fmt: skip
    straight = ppo.main(tiny_args(reward, tmp_path / "straight", **fast))
    assert 0 < straight[-1]["charts/token_cache_hit_rate"] <= 1
    checkpoint = str(tmp_path / "straight" / "policy_2.pkl")
    resumed = ppo.main(tiny_args(reward, tmp_path / "straight", resume=checkpoint, **fast))
    assert deterministic(resumed) == deterministic(straight[2:])


def test_the_reward_on_the_policys_tokens_is_the_reward_on_its_frames(bag_reward):
    """A one-frame VQ head scores tokens the policy already has exactly as it scores the frames."""
    encoder, _, tokenizer = bag_reward
    model = RewardModel(RewardConfig(backbone="vq", tokenizer=tokenizer, head_hidden=16), rngs=nnx.Rngs(1))
    restore_params(model.encoder, load_checkpoint(encoder, "encoder")["params"])
    learned = LearnedProgress(model)
    with tiny_env(max_steps=100) as env:
        frames, _ = env.reset(seed=0)
        for action in (7, 5, 5, 2):
            frames, *_ = env.step(np.full(env.num_envs, action))
        frames = frames.copy()
    np.testing.assert_array_equal(learned.score_tokens(learned.tokens(frames)), learned.score(frames))
    gray = frames[..., :1]
    np.testing.assert_array_equal(
        learned.score(gray), learned.score(frames)
    )  # a gray palette: the same frame


def test_a_route_reward_rides_with_curriculum_states_and_resumes_exactly(bag_reward, tmp_path):
    """PPO with --route-frames: the route is a run of the game's own frames (random play from power-on,
    with PPO's env settings), the envs move along it, curriculum states keep their positions, and a
    resumed run continues exactly. Its curriculum is the backward chain, whose goal is the run's end,
    and its policy (with memory) reads the route progress, which the evaluation gives it too."""
    encoder, reward, _ = bag_reward
    run = tmp_path / "frames" / "run_00"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with tiny_env(max_steps=100) as env:
        frames, _ = env.reset(seed=0)
        for t in range(24):
            Image.fromarray(frames[0]).save(run / f"{t:06d}.png")
            frames, *_ = env.step(rng.integers(0, env.num_actions, env.num_envs))
    settings = dict(pretrained_tokenizer=str(encoder), route_frames=str(tmp_path / "frames"), route_window=4,
                    route_scene_change=20, route_text_barrier=8, novelty_bonus=0.05, iterations=4,
                    save_every=2, env_groups=2, curriculum_backward=True, memory=4,
                    progress_bins=4)  # fmt: skip
    straight = ppo.main(tiny_args(reward, tmp_path / "run", **settings))
    runner = load_checkpoint(tmp_path / "run" / "policy_2.pkl", "policy")["train_state"]["runner"]
    chain = runner["pool"]
    assert {"goal", "start_score", "outcomes"} <= set(chain) and chain["scores"] == sorted(chain["scores"])
    assert all(progress["route"].shape == (1, 1) for progress in runner["progress"])  # 1 env x 1 run
    positions = [payload["route"] for payload in runner["pool"]["payloads"]]
    assert positions and all(p.shape == (1,) for p in positions) and max(int(p[0]) for p in positions) > 0
    # Curriculum states keep the screens their episode had shown (the seed state: its first frame).
    assert all(payload["screens"].shape[1] == 90 for payload in runner["pool"]["payloads"])
    assert max(len(payload["screens"]) for payload in runner["pool"]["payloads"]) > 1
    checkpoint = str(tmp_path / "run" / "policy_2.pkl")
    resumed = ppo.main(tiny_args(reward, tmp_path / "run", resume=checkpoint, **settings))
    assert deterministic(resumed) == deterministic(straight[2:])
    evaluated = evaluate_policy.main(
        evaluate_policy.Args(
            policy=checkpoint, steps=6, episodes=2, num_workers=0, out_dir=str(tmp_path / "eval")
        )
    )
    assert evaluated["rows"][0]["episodes"] == 2
    (tmp_path / "frames").rename(tmp_path / "moved")
    with pytest.raises(SystemExit, match="the policy reads its route progress"):
        evaluate_policy.main(evaluate_policy.Args(policy=checkpoint, steps=6, out_dir=str(tmp_path / "eval")))
    with pytest.raises(SystemExit, match="--progress-bins must be >= 0, and above 0 it needs --route-frames"):
        ppo.main(tiny_args(reward, tmp_path / "bad", progress_bins=4))
    with pytest.raises(SystemExit, match="--route-frames .* is not a folder"):
        ppo.main(tiny_args(reward, tmp_path / "bad", route_frames=str(tmp_path / "nowhere")))
    with pytest.raises(SystemExit, match="--route-scene-change must be >= 0"):
        ppo.main(tiny_args(reward, tmp_path / "bad", route_scene_change=-1))
    with pytest.raises(SystemExit, match="--route-text-barrier must be >= 0"):
        ppo.main(tiny_args(reward, tmp_path / "bad", route_text_barrier=-1))
    with pytest.raises(SystemExit, match="--novelty-bonus must be >= 0"):
        ppo.main(tiny_args(reward, tmp_path / "bad", novelty_bonus=-0.1))
    with pytest.raises(SystemExit, match="--curriculum-backward needs --route-frames"):
        ppo.main(tiny_args(reward, tmp_path / "bad", curriculum_backward=True))
