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
per iteration and training_curves.png draws them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import nnx
from tqdm import tqdm

from envs.actions import FRAME_SKIP, PRESS_FRAMES
from envs.emulators import WorkerError
from envs.games import EMUQUEST_ROM, detected_line
from envs.vec_gameboy import WORKER_TIMEOUT_S
from models.checkpoint import CheckpointError, restore_tree
from models.policy import trainable_filter
from models.sharding import compute_dtype, local_copy, replicate, shard_local
from training.cli import fail
from training.distributed import Distributed, initialize
from training.entropy_watch import EntropyWatch
from training.interrupt import StopRequest
from training.metrics import MetricsLog
from training.out_dir import OutDir
from training.paths import (
    POLICY_FINAL_FILE,
    PPO_DIR,
    PRETRAIN_DIR,
    REWARD_DIR,
    WORLD_MODEL_DIR,
    checkpoint_folder,
    find_checkpoint,
    local_checkpoint,
    locate_checkpoint,
    path_for_checkpoint,
    path_from_checkpoint,
)
from training.policy_io import load_resumable, new_policy, policy_config, policy_from_checkpoint, save_policy
from training.ppo import (
    CURVES,
    PPOState,
    make_burn_in,
    make_observe_and_act,
    make_policy_step,
    make_prepare_batch,
    make_update,
)
from training.progress import ProgressSettings, load_progress, settings_of_run
from training.resume import flag, settings_on_resume
from training.rollout import ImaginedEnvs, Runner, make_runner
from training.rom_binding import bound_rom, rom_record
from training.route import load_routes, route_goal
from training.token_cache import TokenCache


@dataclass
class Args:
    """PPO with a learned progress reward on VecGameBoy."""

    reward_model: str = "reward_resnet34.pkl"
    """Progress reward checkpoint (kind 'reward') from train_reward.py. Every checkpoint flag takes a
    path or a name found in checkpoints/ (e.g. reward_vq.pkl)."""
    pretrained_tokenizer: str | None = None
    """VQ tokenizer checkpoint (pretrained_tokenizer.pkl or pretrained_encoder.pkl) whose
    encoder and codebook the VQ policy sees frames through. None: a fresh encoder."""
    pretrained_dynamics: str | None = None
    """Dynamics checkpoint whose transformer initialises the VQ policy's trunk. None: fresh."""
    rom: str | None = None
    """Game Boy ROM. None: the embedded game EmuQuest, or with --resume the checkpoint's own ROM (its
    title and sha1 are recorded in every policy; another cartridge is refused)."""
    allow_other_rom: bool = False
    """With --resume, run on a --rom whose sha1 differs from the one the checkpoint was trained on."""
    initial_state: str | None = None
    """PyBoy state file that every episode starts from instead of power-on (e.g. Pokémon Red after its
    intro; make one with data/make_start_state.py). It also starts the curriculum pool."""
    policy: Literal["vq", "vit"] = "vq"
    """'vq': frames -> VQ tokens -> transformer; 'vit': the legacy patch ViT."""
    finetune_encoder: bool = False
    """Train the VQ encoder with the policy (default: frozen, gradients stopped)."""
    iterations: int = 12000
    """PPO iterations (each is one rollout of num_steps x num_envs env steps + one update)."""
    num_envs: int = 16
    """Emulators stepped in parallel."""
    num_workers: int | None = None
    """Emulator worker processes (None: one per CPU core; 0: the serial backend)."""
    env_groups: int = 2
    """Split the envs into this many groups that step in turn, so one group's emulators run
    while the policy computes the next group's actions (at most --num-envs; 1: no overlap)."""
    frame_skip: int = FRAME_SKIP
    """Game Boy frames per env step (a press is held for part of it)."""
    press_frames: int = PRESS_FRAMES
    """Frames a button is held at the start of a step (< frame_skip)."""
    max_episode_steps: int = 2048
    """Env steps before an episode is truncated."""
    num_steps: int = 128
    """Env steps per env per rollout."""
    reward_interval: int = ProgressSettings.interval
    """Score frames with the reward model every this many env steps."""
    time_penalty: float = ProgressSettings.time_penalty
    """Subtracted from the reward at every env step."""
    reward_scale: float = ProgressSettings.scale
    """Multiplies the progress delta (the reward model's scores have no fixed unit)."""
    progress_baseline: Literal["last", "best"] = ProgressSettings.baseline
    """What progress is measured from. last: the last scored frame, R(now) - R(then) (the seed's
    delta). best: the episode's best score so far, credited only when beaten, so a detour through
    lower-scored states costs nothing. With last, leaving a state the reward model overrates (an
    open dialogue box, say) is a negative reward, which can hold the agent there."""
    route_frames: str | None = None
    """Speedrun frames (<dir>/<run>/*.png, e.g. the main job's speedruns/frames): score each episode by
    the reward model's score of the furthest speedrun frame it has matched in order, instead of its
    own frames (training/route.py). Needs a reward with the VQ backbone."""
    route_window: int = ProgressSettings.route_window
    """With --route-frames: a frame is matched against this many frames of each run after the last
    match, or with --route-scene-change after the end of its scene (30 saved frames at every 4th
    emulator frame are 4 env steps), so no stretch of the run (with scenes, no new scene) that long can
    be skipped by looking ahead."""
    route_tolerance: int = ProgressSettings.route_tolerance
    """With --route-frames: tokens (of the 9x10 grid) a frame may differ from a run's frame by and still
    match it. A step of the player changes 2, so 1 means the same place."""
    route_scene_change: int = ProgressSettings.route_scene_change
    """With --route-frames: a run's scene (a room walked in, a text page) ends where the next frame
    differs by more than this many tokens (a step changes at most 8, a text box 40, a room 90). A frame
    is matched against the rest of its env's scene as well as the window, and one that still matches
    its scene stays in it: standing where the run stood before a text is not after it (0: the window
    alone, which lets a text shorter than the window be skipped)."""
    route_text_barrier: int = ProgressSettings.route_text_barrier
    """With --route-frames: a text page of the runs (a scene that a change of 21-60 tokens opens) at
    least this many saved frames long ends the window before it, so every page must be matched in turn
    (8: every page an agent stepping 7.5 saved frames at a time can see; 0: none)."""
    novelty_bonus: float = ProgressSettings.novelty
    """Reward for each coarse screen (a 9x10 gray thumbnail, Go-Explore's cell without its score band)
    an episode shows for the first time: an episodic exploration bonus from pixels, so a room the reward
    has no slope in pays about once per tile stood on (0: none)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    learning_rate: float = 2.5e-4
    """Adam learning rate."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Passes over each rollout."""
    clip_coef: float = 0.1
    """PPO ratio clip."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Global gradient norm clip."""
    return_filter: float = 1.0
    """Train only on the top fraction of episode segments by return (1.0: keep all)."""
    curriculum_prob: float = 0.0
    """Probability that a reset loads a saved progress state instead of power-on."""
    curriculum_capacity: int = 32
    """Saved states kept in the curriculum pool (or cells in the archive)."""
    curriculum_temperature: float = 1.0
    """How the pool of new highs picks a reset's state: softmax over score / temperature, in the reward
    model's score units. Low: nearly always the frontier; high: every stretch of the route saved so
    far, which the pool keeps as a chain of ever higher states."""
    curriculum_cells: bool = False
    """Go-Explore's archive instead of new progress highs: a state is saved the first time the agent
    reaches a cell (the gray screen shrunk to 9x10 blocks in 8 levels, and the score's --cell-band), and
    resets favour new cells further along (envs/archive.py)."""
    curriculum_backward: bool = False
    """Go-Explore's robustify phase on the pool of new highs (needs --route-frames): once an episode
    reaches the speedruns' end from the chain's last state, half the pool's resets start on a pointer
    that moves one state back whenever 2 of the last 8 episodes from it got 4 states further (or to the
    end), or after 32 tries; the other half anywhere from the pointer on (envs/curriculum.py)."""
    curriculum_mastery: bool = False
    """Half the pool's resets on the saved states that episodes fail to get further from (Prioritized
    Level Replay's idea): each state keeps whether its last 16 episodes reached the score of the state 4
    further up (a room or so), and is drawn in proportion to its failure rate; the other half by
    score, as without it (envs/curriculum.py MasteryPool)."""
    curriculum_thin: bool = False
    """When the pool of new highs is full, drop the state whose neighbours in score are closest instead
    of the lowest, so the states near the start stay beside the frontier (as --curriculum-backward's
    chain does)."""
    cell_band: float = 4.0
    """Width of a cell's progress band, in the reward model's score units; a cell one band further
    along is e times as likely to be a reset's start."""
    entropy_warn_iters: int = 50
    """Warn when entropy stays above 99% of its maximum for this many iterations."""
    log_every: int = 10
    """Print one summary line every this many iterations (metrics.jsonl gets every one)."""
    save_every: int = 1000
    """Write checkpoints/policy_<iteration>.pkl every this many iterations."""
    resume: str | None = None
    """Policy checkpoint to continue from (policy_<iteration>.pkl or policy_final.pkl). Restores the
    params, optimizer, RNG, curriculum pool and the run's settings: flags left out take the
    checkpoint's values; changing its envs, policy, game or seed is refused, and other changes are
    printed. Without --out-dir the run continues in the checkpoint's folder."""
    out_dir: str = str(PPO_DIR)
    """Where checkpoints and metrics.jsonl go: a folder or a storage URL (s3://bucket/run)."""
    seed: int = 0
    """Seeds params, sampling and env resets."""
    worker_timeout: float = WORKER_TIMEOUT_S
    """Seconds to wait for an emulator worker that is alive but silent before stopping with an error."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype (auto: bf16 on GPU, fp32 on CPU); master weights stay fp32."""
    embed_dim: int = 192
    """Policy width when no pretrained checkpoint fixes it (tiny runs: 32)."""
    num_layers: int = 4
    """Policy transformer layers when no dynamics checkpoint fixes it."""
    num_heads: int = 4
    """Policy attention heads when no dynamics checkpoint fixes it."""
    encoder_channels: tuple[int, ...] = (32, 64, 128, 192)
    """Fresh VQ encoder's channels when no tokenizer is given (tiny runs: 8 16 16 16)."""
    codebook_size: int = 512
    """Fresh VQ codebook size when no tokenizer is given."""
    memory: int = 0
    """Width of a GRU memory on the trunk's features, carried from step to step and reset at episode
    ends (0: the policy sees one frame). With memory, PPO's minibatches are whole env sequences, so
    --num-minibatches must divide --num-envs."""
    memory_burn_in: int = 0
    """Rebuild the memory of an env reset onto a curriculum state with the current weights: each state
    keeps the last this many observations before it (across the episodes that led there), and the reset
    replays them through the policy from an empty memory (R2D2's burn-in; 0: the memory stored with the
    state, which older weights wrote). Needs --memory and a frozen VQ encoder."""
    progress_bins: int = 0
    """Give the policy the route's progress, in this many bins: how far along the speedruns its episode
    has got, a pixel-derived stand-in for the event flags the Pokémon Red agents read (0: none; needs
    --route-frames)."""
    trunk_pool: tuple[int, int] = (1, 1)
    """Merge windows of this many token rows and columns into one trunk token, when no dynamics
    checkpoint fixes it ((3, 2): 15 tokens instead of 90)."""
    observation: Literal["rgb", "gray"] = "rgb"
    """What the envs return: RGB frames, or 1-channel gray (lossless for a gray-palette game such as
    EmuQuest or Pokémon Red; a third of the bytes, and the VQ encoder's first conv reads the gray)."""
    token_cache: int = 65_536
    """Distinct frames whose tokens the frozen VQ encoder remembers, so a repeated screen is not encoded
    again (0: encode every frame)."""
    world_model: str | None = None
    """A world model (train_world_model.py's world_model.pkl, conditioned on buttons): --imagined-envs of
    the --num-envs step in its imagination instead of in the emulator, rewarded by the same reward model."""
    imagined_envs: int = 0
    """How many of --num-envs are imagined (needs --world-model; all of them: no emulator steps at all)."""
    imagined_sample_steps: int = 4
    """Euler steps per imagined frame."""
    minutes: float = 0.0
    """Stop after the iteration that passes this many minutes of training and save policy_final.pkl, as if
    --iterations had ended there (0: no limit). For comparisons at equal wall-clock time."""
    overlap_update: bool = False
    """Run each update while the next rollout steps, which then acts one update behind (PPO's ratio
    corrects for it): faster when the CPU has idle time during rollouts."""
    distributed: tyro.conf.OmitArgPrefixes[Distributed] = field(default_factory=Distributed)
    """Several processes training as one (jax.distributed): each steps its own --num-envs envs, and the
    update, its advantages and the return filter see every process's envs. See training/distributed.py."""


def check_args(args: Args):
    problems = []
    if args.num_envs < 1 or args.env_groups < 1:
        problems.append("--num-envs and --env-groups must be >= 1")
    if not 0.0 < args.return_filter <= 1.0:
        problems.append("--return-filter is the kept fraction, in (0, 1]")
    if not 0.0 <= args.curriculum_prob <= 1.0:
        problems.append("--curriculum-prob must be in [0, 1]")
    if args.reward_interval < 1 or args.save_every < 1 or args.iterations < 0:
        problems.append("--reward-interval and --save-every must be >= 1, --iterations >= 0")
    if (args.num_steps * args.num_envs) % args.num_minibatches:
        problems.append(
            f"--num-minibatches {args.num_minibatches} must divide num_steps x num_envs = "
            f"{args.num_steps * args.num_envs}"
        )
    if args.rom is not None and not Path(args.rom).is_file():
        problems.append(f"--rom {args.rom} not found")
    if args.initial_state is not None and not Path(args.initial_state).is_file():
        problems.append(f"--initial-state {args.initial_state} not found")
    if not 0 <= args.imagined_envs <= args.num_envs or (args.imagined_envs > 0) != (
        args.world_model is not None
    ):
        problems.append("--imagined-envs (from 1 to --num-envs) and --world-model go together")
    if args.minutes < 0 or args.imagined_sample_steps < 1:
        problems.append("--minutes must be >= 0 and --imagined-sample-steps >= 1")
    if args.memory < 0 or (args.memory and args.num_envs % args.num_minibatches):
        problems.append("--memory must be >= 0, and with memory --num-minibatches must divide --num-envs")
    if args.curriculum_thin and (
        args.curriculum_cells or args.curriculum_backward or args.curriculum_capacity < 3
    ):
        problems.append(
            "--curriculum-thin is a rule for the pool of new highs (--curriculum-capacity >= 3): not with "
            "--curriculum-cells or --curriculum-backward"
        )
    if args.memory_burn_in < 0 or (
        args.memory_burn_in and (not args.memory or args.policy != "vq" or args.finetune_encoder)
    ):
        problems.append(
            "--memory-burn-in must be >= 0, and above 0 it needs --memory and the VQ policy's frozen encoder "
            "(a history of tokens, not frames)"
        )
    if args.curriculum_capacity < 1 or not args.cell_band > 0 or not args.curriculum_temperature > 0:
        problems.append("--curriculum-capacity must be >= 1, --cell-band and --curriculum-temperature > 0")
    if args.curriculum_backward and (
        args.route_frames is None or args.curriculum_cells or args.curriculum_capacity < 3
    ):
        problems.append(
            "--curriculum-backward needs --route-frames (its goal is the runs' end), --curriculum-capacity "
            ">= 3 and no --curriculum-cells"
        )
    if args.curriculum_mastery and (args.curriculum_cells or args.curriculum_backward):
        problems.append(
            "--curriculum-mastery is a rule for the pool of new highs: not with --curriculum-cells "
            "or --curriculum-backward"
        )
    if args.progress_bins < 0 or (args.progress_bins and args.route_frames is None):
        problems.append("--progress-bins must be >= 0, and above 0 it needs --route-frames")
    if args.route_frames is not None and not Path(args.route_frames).is_dir():
        problems.append(f"--route-frames {args.route_frames} is not a folder")
    if args.route_window < 1:
        problems.append("--route-window must be >= 1")
    for name in ("route_tolerance", "route_scene_change", "route_text_barrier"):
        if getattr(args, name) < 0:
            problems.append(f"{flag(name)} must be >= 0")
    if args.novelty_bonus < 0:
        problems.append("--novelty-bonus must be >= 0")
    if problems:
        raise fail("; ".join(problems))


# On --resume, flags left out take the checkpoint's values. Changing a setting that makes up the run
# (its envs, policy, game, seed) is refused; changing any other setting is allowed and printed (including
# --save-every: a checkpoint's rollout ends every episode, so it shapes the run). These flags are not the
# run's settings and always come from the command line:
# (--rom is checked against the cartridge the checkpoint records instead: training/rom_binding.py.)
RUNTIME = frozenset({
    "iterations", "log_every", "out_dir", "num_workers", "entropy_warn_iters", "worker_timeout", "resume",
    "rom", "allow_other_rom", "distributed", "minutes",
})  # fmt: skip
FIXED_ON_RESUME = frozenset({
    "reward_model", "pretrained_tokenizer", "pretrained_dynamics", "policy", "finetune_encoder",
    "num_envs", "env_groups", "frame_skip", "press_frames", "curriculum_capacity", "seed", "embed_dim",
    "num_layers", "num_heads", "encoder_channels", "codebook_size", "trunk_pool", "observation",
    "world_model", "imagined_envs", "curriculum_cells", "cell_band", "memory", "route_frames",
    "curriculum_backward", "curriculum_mastery", "curriculum_thin", "progress_bins", "memory_burn_in",
})  # fmt: skip
# Settings that name files: a checkpoint stores them relative to its own folder.
PATH_SETTINGS = (
    "reward_model", "pretrained_tokenizer", "pretrained_dynamics", "rom", "initial_state", "world_model",
    "route_frames",
)  # fmt: skip


def main(args: Args) -> list[dict]:
    """Train; returns the per-iteration metrics of this invocation (also in metrics.jsonl)."""
    check_args(args)
    initialize(args.distributed)
    ckpt = None
    if args.resume:
        location = locate_checkpoint(args.resume, "--resume", args.out_dir, PPO_DIR)
        resume = local_checkpoint(location, "--resume")
        ckpt = load_resumable(resume)
        saved = dict(ckpt["config"]["args"])
        for name in PATH_SETTINGS:
            if saved.get(name):
                saved[name] = str(path_from_checkpoint(saved[name], checkpoint_folder(location)))
        args = settings_on_resume(args, saved, fixed=FIXED_ON_RESUME, runtime=RUNTIME, same=same_setting)
        rom = bound_rom(args.rom, ckpt["config"].get("rom"), resume, args.allow_other_rom)
        if args.out_dir == Args.out_dir:  # a resumed run continues in its own folder
            args = dataclasses.replace(args, out_dir=str(checkpoint_folder(location)))
        args = dataclasses.replace(args, resume=str(location), rom=str(rom))
        check_args(args)
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


def same_setting(name: str, mine, theirs) -> bool:
    """Two values of a setting agree; checkpoint paths agree when they name the same file, route
    frames when they name the same folder."""
    if name in ("reward_model", "pretrained_tokenizer", "pretrained_dynamics") and mine and theirs:
        return Path(mine).resolve() == Path(theirs).resolve() or Path(mine).name == Path(theirs).name
    if name == "route_frames" and mine and theirs:
        return Path(mine).resolve() == Path(theirs).resolve()
    return mine == theirs


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
