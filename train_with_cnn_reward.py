"""Phase 3: PPO on VecGameBoy, rewarded by a progress score learned from speedrun video.

    uv run python train_with_cnn_reward.py --reward-model reward_resnet34.pkl \
        --pretrained-tokenizer pretrained_tokenizer.pkl \
        --pretrained-dynamics pretrained_dynamics.pkl --return-filter 0.8 --iterations 12000

The env gives no reward: every --reward-interval env steps the reward model scores each env's
frame and the env earns `progress_delta - time_penalty` (training/progress.py). Each iteration is
one rollout on the emulator workers with a jitted policy step (training/rollout.py), then GAE, the
return filter and every minibatch epoch in one jitted, donated update (training/ppo.py). Resets
load curriculum states saved at new progress highs with --curriculum-prob. Every --save-every
iterations a checkpoint holds all the run needs to --resume exactly; metrics.jsonl gets a record
per iteration and training_curves.png draws them. Its flags, the combinations it refuses and what
--resume restores are in training/ppo_config.py, which pipeline.py and the benches build too.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import nnx
from tqdm import tqdm

from envs.emulators import WorkerError
from envs.games import EMUQUEST_ROM, detected_line
from models.checkpoint import CheckpointError, restore_tree
from models.policy import trainable_filter
from models.sharding import compute_dtype, local_copy, replicate, shard_local
from training.cli import fail
from training.distributed import initialize
from training.entropy_watch import EntropyWatch
from training.interrupt import StopRequest
from training.metrics import MetricsLog
from training.out_dir import OutDir
from training.paths import (
    POLICY_FINAL_FILE,
    PRETRAIN_DIR,
    REWARD_DIR,
    WORLD_MODEL_DIR,
    find_checkpoint,
    local_checkpoint,
    locate_checkpoint,
    path_for_checkpoint,
)
from training.policy_io import new_policy, policy_config, policy_from_checkpoint, save_policy
from training.ppo import (
    CURVES,
    PPOState,
    make_burn_in,
    make_observe_and_act,
    make_policy_step,
    make_prepare_batch,
    make_update,
)
from training.ppo_config import PATH_SETTINGS, Args, check_args, resumed
from training.progress import load_progress, settings_of_run
from training.rollout import ImaginedEnvs, Runner, make_runner
from training.rom_binding import rom_record
from training.route import load_routes, route_goal
from training.token_cache import TokenCache


def main(args: Args) -> list[dict]:
    """Train; returns the per-iteration metrics of this invocation (also in metrics.jsonl)."""
    check_args(args)
    initialize(args.distributed)
    ckpt = None
    if args.resume:
        args, ckpt = resumed(args)
    out = OutDir(args.out_dir)
    reward_model = locate_checkpoint(args.reward_model, "--reward-model", REWARD_DIR)
    args = dataclasses.replace(args, reward_model=str(reward_model))  # the checkpoint records the file found
    progress = load_progress(local_checkpoint(reward_model, "--reward-model"))
    settings = settings_of_run(dataclasses.asdict(args))
    routes = None
    if args.route_frames:
        try:
            routes = load_routes(args.route_frames, progress)
        except (ValueError, FileNotFoundError) as err:
            raise fail(f"--route-frames: {err}") from None
        print(f"route: {len(routes)} runs, {sum(len(route.scores) for route in routes)} frames")
    imagined = None
    if args.world_model:
        world_model = locate_checkpoint(args.world_model, "--world-model", WORLD_MODEL_DIR)
        args = dataclasses.replace(args, world_model=str(world_model))
        imagined = ImaginedEnvs(
            str(local_checkpoint(world_model, "--world-model")),
            args.imagined_envs,
            args.imagined_sample_steps,
        )
    runner = make_runner(
        args.rom or str(EMUQUEST_ROM),
        progress,
        settings,
        initial_state=args.initial_state,
        num_envs=args.num_envs,
        num_workers=args.num_workers,
        env_groups=args.env_groups,
        frame_skip=args.frame_skip,
        press_frames=args.press_frames,
        max_episode_steps=args.max_episode_steps,
        curriculum_prob=args.curriculum_prob,
        curriculum_capacity=args.curriculum_capacity,
        curriculum_temperature=args.curriculum_temperature,
        cell_band=args.cell_band if args.curriculum_cells else None,
        backward_goal=route_goal(routes) if args.curriculum_backward else None,
        mastery=args.curriculum_mastery,
        thin=args.curriculum_thin,
        memory=args.memory,
        burn_in=args.memory_burn_in,
        seed=args.seed + 7919 * jax.process_index(),  # every process's envs play their own episodes
        grayscale=args.observation == "gray",
        worker_timeout_s=args.worker_timeout,
        imagined=imagined,
        routes=routes,
    )
    print(detected_line(runner.detected))
    try:
        with out:
            return train(args, runner, ckpt, jax.random.PRNGKey(args.seed), out)
    except WorkerError as err:
        raise fail(str(err)) from None
    finally:
        runner.close()


def build_policy(args: Args, num_actions: int, key):
    """A fresh policy with the pretrained encoder and dynamics copied in: (model, config, key)."""
    tokenizer, dynamics = (
        args.pretrained_tokenizer
        and find_checkpoint(args.pretrained_tokenizer, "--pretrained-tokenizer", PRETRAIN_DIR),
        args.pretrained_dynamics
        and find_checkpoint(args.pretrained_dynamics, "--pretrained-dynamics", PRETRAIN_DIR),
    )
    policy_cfg, encoder, dynamics = policy_config(
        args.policy,
        num_actions,
        str(compute_dtype(args.dtype)),
        pretrained_tokenizer=tokenizer and str(tokenizer),
        pretrained_dynamics=dynamics and str(dynamics),
        finetune_encoder=args.finetune_encoder,
        embed_dim=args.embed_dim,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        encoder_channels=args.encoder_channels,
        codebook_size=args.codebook_size,
        gray=args.observation == "gray",
        pool=args.trunk_pool,
        memory=args.memory,
        progress_bins=args.progress_bins,
    )
    key, init_key = jax.random.split(key)
    return new_policy(policy_cfg, encoder, dynamics, init_key), policy_cfg, key


def train(args: Args, runner: Runner, ckpt: dict | None, key, out: OutDir) -> list[dict]:
    """The PPO loop, fresh or from the resumed checkpoint `ckpt`. Returns this invocation's
    per-iteration records (also in metrics.jsonl)."""
    num_actions = runner.groups[0].env.num_actions
    if ckpt is not None:
        try:
            model, policy_cfg = policy_from_checkpoint(ckpt, args.resume)
        except CheckpointError as err:
            raise fail(f"--resume: {err}") from None
        if policy_cfg.num_actions != num_actions:
            raise fail(f"--resume: {args.resume} has {policy_cfg.num_actions} actions, the env {num_actions}")
    else:
        model, policy_cfg, key = build_policy(args, num_actions, key)

    graphdef, params, frozen = nnx.split(model, trainable_filter(policy_cfg), ...)
    tx = optax.chain(optax.clip_by_global_norm(args.max_grad_norm), optax.adam(args.learning_rate, eps=1e-5))
    state = PPOState(params, tx.init(params))
    watch = EntropyWatch(num_actions, args.entropy_warn_iters)
    start_iteration = 0
    if args.resume:
        ts = ckpt["train_state"]
        state = PPOState(
            params, restore_tree(state.opt_state, ts["opt_state"], source=f"{args.resume} optimizer")
        )
        key = jnp.asarray(ts["key"], jnp.uint32)
        start_iteration = int(ts["iteration"])
        watch.streak = int(ts["entropy_streak"])
        runner.load_state_dict(ts["runner"])
    # With several processes the state is replicated over all of them and each acts with its own copy.
    state, global_frozen = replicate(state), replicate(frozen)
    runner.restart(start_iteration)
    if args.initial_state and runner.pool is not None and not args.resume:
        runner.seed_pool(Path(args.initial_state).read_bytes())
    progress = runner.groups[0].progress.model
    share_tokens = progress.reads_tokens_of(model)
    print(
        "reward: " + ("the policy's tokens (same encoder)" if share_tokens else "its own encoder, on frames")
    )
    cache = None
    if not policy_cfg.stores_frames and args.token_cache:
        observe, act = make_observe_and_act(graphdef)
        cache = TokenCache(lambda frames: observe(local_copy(state.params), frozen, frames), args.token_cache)

        def policy_step(params, frozen, frames, first, memory, k, progress):
            tokens = cache.tokens(frames)
            return (tokens, *act(params, frozen, tokens, first, memory, k, progress))
    else:
        policy_step = make_policy_step(graphdef)
    replay = make_burn_in(graphdef, args.memory_burn_in) if args.memory_burn_in else None
    sequences = policy_cfg.memory > 0  # a policy with memory trains on whole env sequences
    prepare_batch = make_prepare_batch(args.gamma, args.gae_lambda, args.return_filter, sequences)
    update = make_update(
        graphdef,
        global_frozen,
        tx,
        num_minibatches=args.num_minibatches,
        update_epochs=args.update_epochs,
        clip_coef=args.clip_coef,
        vf_coef=args.vf_coef,
        ent_coef=args.ent_coef,
        sequences=sequences,
    )

    def save(path: Path, iteration: int):
        nnx.update(model, local_copy(state.params))
        run_args = dataclasses.asdict(args)
        for name in PATH_SETTINGS:
            if run_args[name]:
                run_args[name] = path_for_checkpoint(run_args[name], out.target)
        save_policy(
            path,
            model=model,
            policy_cfg=policy_cfg,
            run_args=run_args,
            rom=rom_record(args.rom or EMUQUEST_ROM, out.target),
            game=runner.detected,
            state=local_copy(state),
            key=key,
            iteration=iteration,
            runner_state=runner.state_dict(),
            entropy_streak=watch.streak,
        )

    history = []
    out_dir = out.local
    last_saved = args.resume  # the last good policy, if any (a URL for an --out-dir URL)
    steps_per_iteration = args.num_steps * args.num_envs * jax.process_count()  # every process's envs
    bar = tqdm(
        range(start_iteration, args.iterations), initial=start_iteration, total=args.iterations, desc="PPO"
    )
    acting_params = local_copy(state.params)  # what the next rollout acts with
    in_flight = None  # the last iteration's update, still running while the next rollout steps
    finished_at = time.perf_counter()

    def finish(iteration, losses, filter_stats, stats):
        """Wait for an iteration's update, check it, log its record; returns the record."""
        nonlocal finished_at
        waiting = time.perf_counter()
        losses = jax.device_get(losses)
        stats["charts/update_wait_seconds"] = time.perf_counter() - waiting  # all of it, without overlap
        not_finite = [name for name, value in losses.items() if not np.isfinite(value)]
        if not_finite:
            kept = f"{last_saved} keeps the last good policy" if last_saved else "nothing was saved"
            raise fail(
                f"PPO: {', '.join(not_finite)} became NaN or infinite at iteration {iteration}; "
                f"stopped before saving, so {kept} (try a lower --learning-rate)"
            )
        now = time.perf_counter()
        seconds, finished_at = now - finished_at, now
        entropy_fraction, warning = watch(float(losses["losses/entropy"]))
        if warning:
            tqdm.write(warning)
        record = {
            "stage": "ppo",
            "game": runner.detected,
            "iteration": iteration,
            "env_steps": iteration * steps_per_iteration,
            "charts/sps": steps_per_iteration / seconds,
            "policy/entropy_fraction": entropy_fraction,
            **{k: float(v) for k, v in losses.items()},
            **{k: int(v) for k, v in jax.device_get(filter_stats).items()},
            **stats,
        }
        log.write(record)
        history.append(record)
        bar.set_postfix(sps=f"{record['charts/sps']:.0f}", ent=f"{entropy_fraction:.3f}")
        if iteration % args.log_every == 0 or iteration == args.iterations:
            tqdm.write(format_line(record))
        return record

    deadline = time.perf_counter() + 60 * args.minutes if args.minutes else None
    final_iteration = start_iteration
    with MetricsLog(out_dir, CURVES) as log, StopRequest() as stop:
        log.start("ppo", after=start_iteration if args.resume else None, key="iteration")
        for index in bar:
            iteration = index + 1
            key, rollout_key, update_key = jax.random.split(key, 3)
            if jax.process_count() > 1:  # each process samples its own envs' actions
                rollout_key = jax.random.fold_in(rollout_key, jax.process_index())
            # A checkpoint is a resume point, so its rollout ends every episode.
            checkpoint_now = iteration % args.save_every == 0
            started = time.perf_counter()
            burn_in = partial(replay, acting_params, frozen) if replay else None
            batch, last_value, stats = runner.rollout(
                lambda frames, first, memory, k, progress, params=acting_params: policy_step(
                    params, frozen, frames, first, memory, k, progress
                ),
                rollout_key,
                args.num_steps,
                share_tokens,
                burn_in,
            )
            stats["charts/rollout_sps"] = steps_per_iteration / (time.perf_counter() - started)
            if cache is not None:
                hits, misses = cache.take_counts()
                stats["charts/token_cache_hit_rate"] = hits / max(hits + misses, 1)
            stats |= {
                **runner.episode_stats(),
                "curriculum/pool_size": len(runner.pool) if runner.pool is not None else 0,
                "curriculum/best_score": runner.best_score if np.isfinite(runner.best_score) else None,
            }
            if in_flight is not None:
                finish(*in_flight)
            stopping = stop.requested
            # One batch of every process's envs (env axis 1): GAE, the return filter and the update
            # see them all.
            flat, filter_stats = prepare_batch(
                shard_local(batch, axis=1), shard_local(last_value), checkpoint_now
            )
            # With --overlap-update the next rollout steps while this update runs, acting one update
            # behind (PPO's ratio corrects for it); a checkpoint, the last iteration and a stop wait for it.
            out_of_time = deadline is not None and time.perf_counter() >= deadline
            overlap = args.overlap_update and not (
                checkpoint_now or stopping or out_of_time or iteration == args.iterations
            )
            if overlap:
                acting_params = jax.tree.map(jnp.copy, local_copy(state.params))  # the update donates them
            state, losses = update(state, flat, update_key)
            in_flight = (iteration, losses, filter_stats, stats)
            if overlap:
                continue
            finish(*in_flight)
            in_flight, acting_params = None, local_copy(state.params)
            final_iteration = iteration
            if checkpoint_now or stopping:
                save(out_dir / f"policy_{iteration}.pkl", iteration)
                out.push()
                last_saved = out.location(out_dir / f"policy_{iteration}.pkl")
                runner.restart(iteration)
            if stopping:
                raise fail(
                    f"interrupted after iteration {iteration}: saved {last_saved}; --resume {last_saved} "
                    "continues from it (with fresh episodes, as after every checkpoint)"
                )
            if out_of_time:
                tqdm.write(f"--minutes {args.minutes:g}: stopping after iteration {iteration}")
                break
    save(out_dir / POLICY_FINAL_FILE, final_iteration)
    out.push()
    return history


def format_line(record: dict) -> str:
    """The one printed line per logging interval."""
    parts = [
        f"it {record['iteration']}",
        f"sps {record['charts/sps']:.0f}",
        f"reward/step {record['rollout/reward_mean']:+.4f}",
        f"entropy {record['policy/entropy_fraction']:.1%} of max",
        f"milestones max {record['rollout/milestones_max']}",
    ]
    if "episode/return" in record:
        parts += [
            f"ep return {record['episode/return']:+.3f}",
            f"title escape {record['episode/title_escape_rate']:.0%}",
            f"intro done {record['episode/intro_done_rate']:.0%}",
            f"ep milestones {record['episode/milestones']:.2f}",
        ]
    return " | ".join(parts)


if __name__ == "__main__":
    main(tyro.cli(Args))
