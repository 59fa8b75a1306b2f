"""The settings of a PPO run (train_with_cnn_reward.py): its flags, the combinations refused, and what
--resume restores. pipeline.py and the benches build the same Args, so they live in a package."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from envs.actions import FRAME_SKIP, PRESS_FRAMES
from envs.vec_gameboy import WORKER_TIMEOUT_S
from training.cli import fail
from training.distributed import Distributed
from training.paths import (
    PPO_DIR,
    checkpoint_folder,
    local_checkpoint,
    locate_checkpoint,
    path_from_checkpoint,
)
from training.policy_io import load_resumable
from training.progress import ProgressSettings
from training.resume import flag, settings_on_resume
from training.rom_binding import bound_rom


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
    """Every bad flag or refused combination, in one line, before any work starts."""
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


def same_setting(name: str, mine, theirs) -> bool:
    """Two values of a setting agree; checkpoint paths agree when they name the same file, route
    frames when they name the same folder."""
    if name in ("reward_model", "pretrained_tokenizer", "pretrained_dynamics") and mine and theirs:
        return Path(mine).resolve() == Path(theirs).resolve() or Path(mine).name == Path(theirs).name
    if name == "route_frames" and mine and theirs:
        return Path(mine).resolve() == Path(theirs).resolve()
    return mine == theirs


def resumed(args: Args) -> tuple[Args, dict]:
    """`args` with --resume's checkpoint settings put back (its paths read relative to its folder, its
    ROM checked), and the loaded checkpoint."""
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
    return args, ckpt


def with_settings(ppo: Args, settings: tuple[str, ...], *, reserved: Collection[str], caller: str) -> Args:
    """`ppo` with NAME=VALUE `settings` read as PPO's own flags would be (tyro reports an unknown name or a
    bad value, with PPO's help for it); the `reserved` settings are `caller`'s to set and are refused."""
    switches = {f.name for f in dataclasses.fields(Args) if f.type in (bool, "bool")}
    flags = []
    for setting in settings:
        name, equals, value = setting.partition("=")
        field_name = name.removeprefix("--").replace("-", "_")
        if not equals or not field_name:
            raise SystemExit(f"--ppo-set {setting!r}: write NAME=VALUE, e.g. ent-coef=0.01")
        if field_name in reserved:
            raise SystemExit(f"--ppo-set {setting!r}: {caller} sets {flag(field_name)} itself")
        if field_name in switches:
            if value.lower() not in ("true", "false"):
                raise SystemExit(f"--ppo-set {setting!r}: {flag(field_name)} is a switch, true or false")
            flags.append(flag(field_name) if value.lower() == "true" else f"--no-{flag(field_name)[2:]}")
        else:
            flags += [flag(field_name), value]
    return tyro.cli(Args, args=flags, default=ppo) if flags else ppo
