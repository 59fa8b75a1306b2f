"""The learned reward PPO trains on: progress deltas of a Phase 2 score, `progress_delta - time_penalty`.

Every `interval` env steps the reward model scores every env's current frame and the env is
credited with the progress made since the last scored frame; every step costs `time_penalty`.
Steps between two scored frames get only the time penalty, and the whole delta lands on the scored
step (GAE carries it back to the actions that earned it), which keeps the reward model off the hot
path: one batched, jitted call per interval. With baseline "best" only gains over the episode's
best score so far are credited, so leaving a state the reward model overrates costs nothing, where
the plain delta would charge the drop and make that state a trap.

An episode's first scored frame is its baseline and earns nothing, so neither a reset (or a
curriculum jump) nor the power-on frame is credited as progress. Its last frame, which no step shows
(the env resets in the step that ends it), is scored on that step whatever the interval, so the
progress since the last scored frame is paid, and so is finishing the game. RAM milestones are logged,
never rewarded.

A reward model trained with --seen-tokens also reads each episode's bag of seen tokens. Each env's
bag is updated every env step (a text box may be up for fewer steps than the interval), from the
policy's own tokens when the policy sees frames through the reward's encoder. With routes
(training/route.py) the score is instead that of the furthest speedrun frame the episode has matched
in order, and the route positions are what each env carries.

A novelty bonus (`novelty` > 0) pays for each coarse screen an episode shows for the first time
(Go-Explore's cell without its score band, envs/archive.py): an episodic count-based exploration bonus
that reads pixels only. A room pays about once per tile stood on (a turn on the spot leaves the coarse
screen as it was, measured on EmuQuest: docs/lab_notes.md), so the bonus is bounded by what the game
shows; a curriculum state keeps the screens its episode had shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from envs.archive import CELL_GRID, screen_keys
from models.checkpoint import CheckpointError, params_of
from models.reward import RewardModel, load_reward, mark_seen
from models.vqvae import gray_encoder
from training.data import map_batches
from training.route import Route, RouteTracker

LAST_FRAMES_BATCH = 4  # ended episodes' last frames per reward-model call: one compile, few ends a step


@dataclass(frozen=True)
class ProgressSettings:
    """How scores become rewards; PPO's flags of the same names default to these."""

    interval: int = 64
    """Score frames every this many env steps."""
    time_penalty: float = 0.001
    """Subtracted from the reward at every env step."""
    scale: float = 1.0
    """Multiplies the progress delta (the reward model's scores have no fixed unit)."""
    baseline: str = "last"
    """"last": R(now) - R(last scored frame); "best": gains over the episode's best score so far."""
    route_window: int = 30
    """With routes: a frame is matched against this many frames of each run after the last match (with
    scenes, after the end of its scene)."""
    route_tolerance: int = 1
    """With routes: tokens (of 90) a frame may differ from a run's frame and still match it."""
    route_scene_change: int = 0
    """With routes: tokens by which consecutive run frames differ where a new scene (text box, room)
    begins; the rest of the env's scene is matched as well as the window (0: the window alone)."""
    route_text_barrier: int = 0
    """With routes: a text page of the runs at least this many frames long may not be passed by looking
    ahead; its frames must be matched to get past it (0: none)."""
    novelty: float = 0.0
    """Added to the reward for each coarse screen an episode shows for the first time (0: none)."""


# ProgressSettings' fields as PPO's flags name them (train_with_cnn_reward.py Args).
PPO_FLAG_OF_SETTING = {
    "interval": "reward_interval",
    "time_penalty": "time_penalty",
    "scale": "reward_scale",
    "baseline": "progress_baseline",
    "route_window": "route_window",
    "route_tolerance": "route_tolerance",
    "route_scene_change": "route_scene_change",
    "route_text_barrier": "route_text_barrier",
    "novelty": "novelty_bonus",
}


def settings_of_run(run_args: dict, **overrides) -> ProgressSettings:
    """The settings a PPO run scored with, from its args (a policy checkpoint's config["args"]); a
    setting the run predates takes today's default, and `overrides` replace any."""
    defaults = ProgressSettings()
    settings = {
        name: run_args.get(flag, getattr(defaults, name)) for name, flag in PPO_FLAG_OF_SETTING.items()
    }
    return ProgressSettings(**settings | overrides)


class LearnedProgress:
    """A 'reward' checkpoint as jitted host functions on numpy arrays (frames uint8 (N, 144, 160, C),
    RGB, or gray for a gray-palette game): `score(frames) -> (N,)` for a one-frame model; for the vq
    head, `tokens(frames) -> (N, 9, 10)` and `score_tokens(tokens, bags) -> (N,)` (bags (N, vocab)
    when the model reads seen-token bags, `bag_size` > 0, else None)."""

    def __init__(self, model: RewardModel):
        self.cfg = model.cfg
        self.bag_size = model.cfg.bag_size
        self.reads_tokens = model.cfg.backbone == "vq"
        self._encoder_params = params_of(model.encoder) if self.reads_tokens else None
        graphdef, self._state = nnx.split(model)
        self._score = jax.jit(lambda state, frames: nnx.merge(graphdef, state).score(as_rgb(frames)))
        self._tokens = jax.jit(lambda state, frames: nnx.merge(graphdef, state).observe(as_rgb(frames)))
        self._score_tokens = jax.jit(
            lambda state, tokens, bags: nnx.merge(graphdef, state).score_observations(tokens, bags)
        )

    def score(self, frames) -> np.ndarray:
        return np.asarray(self._score(self._state, frames), np.float32)

    def tokens(self, frames) -> np.ndarray:
        return np.asarray(self._tokens(self._state, frames))

    def score_tokens(self, tokens, bags=None) -> np.ndarray:
        return np.asarray(self._score_tokens(self._state, tokens, bags), np.float32)

    def reads_tokens_of(self, policy: nnx.Module) -> bool:
        """Whether the policy's observations are this model's tokens (a frozen VQ policy with the
        same encoder and config, or its gray view), so the reward can take them instead of encoding
        the frames again."""
        cfg = policy.cfg
        if not self.reads_tokens or cfg.kind != "vq" or cfg.stores_frames:
            return False
        mine, my_cfg = self._encoder_params, self.cfg.tokenizer
        if cfg.encoder.channels == 1:
            my_cfg, mine = gray_encoder(my_cfg, mine)
        theirs = params_of(policy.vq)
        return (
            cfg.encoder == replace(my_cfg, dtype=cfg.encoder.dtype)
            and jax.tree.structure(mine) == jax.tree.structure(theirs)
            and all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs)))
        )


def as_rgb(frames):
    """RGB frames (B, H, W, 3) as they are; gray frames (B, H, W, 1) with the gray in every channel,
    exactly the RGB frames of a gray-palette game."""
    return frames if frames.shape[-1] == 3 else jnp.repeat(frames, 3, axis=-1)


class ProgressReward:
    """Per-step rewards from frames: `scale * (R(now) - baseline) - time_penalty` on every
    `interval`-th env step, `-time_penalty` on the steps between (`settings`). The baseline is R of
    the last scored frame ("last"), or the episode's best R so far with gains clipped at 0 ("best").
    With `settings.novelty`, every step also earns it for a screen its episode has not shown before.

    `model` is a LearnedProgress (or anything with its `bag_size` and `score`, and for bags
    `tokens` and `score_tokens`). With bags, each env's bag of seen tokens takes every frame; with
    `routes`, each env's route positions take every frame and the score is the route's.
    Each episode's first scored frame sets its env's baseline and earns nothing; the reset frame
    itself never does, since after power-on it is a blank screen the reward model has barely seen
    and scores arbitrarily. Its state is plain data for checkpoints."""

    def __init__(
        self,
        model,
        num_envs: int,
        settings: ProgressSettings = ProgressSettings(),
        routes: list[Route] | None = None,
    ):
        if settings.baseline not in ("last", "best"):
            raise ValueError(f'progress baseline must be "last" or "best", got {settings.baseline!r}')
        self.model = model
        self.from_best = settings.baseline == "best"
        self.interval = settings.interval
        self.time_penalty = settings.time_penalty
        self.scale = settings.scale
        self.baseline = np.full(
            num_envs, np.nan, np.float32
        )  # per env: last scored R, or episode best; NaN: none yet
        self.episode_best = np.full(num_envs, -np.inf, np.float32)  # per env: best R scored this episode
        self.ended_best: dict[int, float] = {}  # after a call: {env: best R} of the episodes it ended
        self.steps = 0  # env steps taken since training started
        self.route = None
        if routes:
            self.route = RouteTracker(
                routes,
                num_envs,
                settings.route_window,
                settings.route_tolerance,
                settings.route_scene_change,
                settings.route_text_barrier,
            )
        bag_size = 0 if self.route else model.bag_size  # a route's scores come with their run's history
        self.bags = np.zeros((num_envs, bag_size), np.uint8)  # per env: tokens seen this episode
        self.novelty = settings.novelty
        self.screens = [set() for _ in range(num_envs)] if self.novelty else None  # per env: screen keys

    def start(self, obs, start_states: dict[int, dict] | None = None):
        """New episodes in every env (after `env.reset`), showing `obs`: forget every baseline (the
        next scored frame sets it), bag and route position; `start_states` {env: episode_state} for
        envs on curriculum states."""
        self.baseline = np.full_like(self.baseline, np.nan)
        self.episode_best[:] = -np.inf
        self.bags[:] = 0
        restarted = np.ones(len(self.bags), bool)
        self._see(obs, None, restarted, start_states or {})
        self._new_screens(obs, restarted, start_states or {})

    def _see(self, obs, tokens, restarted, start_states):
        """Adds the frames' tokens to the bags, or moves the envs along the routes (restarted envs
        start from empty or power-on, or `start_states`); returns the tokens (as given, or None)."""
        if not self.bags.shape[1] and self.route is None:
            return tokens
        tokens = self.model.tokens(obs) if tokens is None else np.asarray(tokens)
        if self.route is not None:
            positions = {env: state.get("route") for env, state in start_states.items()}
            positions = {env: at for env, at in positions.items() if at is not None}
            self.route.restart(restarted, positions)
            self.route.advance(tokens)
            return tokens
        self.bags[restarted] = 0
        for env, state in start_states.items():
            if state.get("bag") is not None:
                self.bags[env] = state["bag"]
        mark_seen(self.bags, tokens)
        return tokens

    def _new_screens(self, obs, restarted, start_states) -> np.ndarray:
        """(N,) 1.0 where an env's frame is a screen its episode has not shown before, else 0. Restarted
        envs begin with their curriculum state's screens or none, and their first frame earns nothing."""
        new = np.zeros(len(obs), np.float32)
        if self.screens is None:
            return new
        for env, key in enumerate(screen_keys(obs)):
            if restarted[env]:
                shown = start_states.get(env, {}).get("screens")
                self.screens[env] = set() if shown is None else {row.tobytes() for row in shown}
            elif key not in self.screens[env]:
                new[env] = 1.0
            self.screens[env].add(key)
        return new

    def episode_state(self, env: int) -> dict:
        """What env's episode has built up that a curriculum state must restore: copies of its bag of
        seen tokens, its route positions and the screens it has shown, uint8 (K, cells) (None where the
        reward keeps none)."""
        screens = None
        if self.screens is not None:
            shown = b"".join(sorted(self.screens[env]))
            screens = np.frombuffer(shown, np.uint8).reshape(-1, CELL_GRID[0] * CELL_GRID[1]).copy()
        return {
            "bag": self.bags[env].copy() if self.bags.shape[1] else None,
            "route": None if self.route is None else self.route.positions[env].copy(),
            "screens": screens,
        }

    def route_progress(self, new_episodes=None) -> np.ndarray:
        """(N,) how far along the speedruns each env's episode is, in [0, 1] (`RouteTracker.fraction`);
        zeros without a route, and where `new_episodes` (N,) bool marks an env whose episode has just
        begun (the route still holds the one that ended). Called before the reward of the frames a
        policy acts on, it is the progress through the frames before them, which the policy reads."""
        if self.route is None:
            return np.zeros(len(self.baseline), np.float32)
        fraction = self.route.fraction()
        return fraction if new_episodes is None else np.where(new_episodes, 0.0, fraction).astype(np.float32)

    def score(self, obs, tokens=None) -> np.ndarray:
        """(N,) the reward model's scores of the envs' current frames `obs`, with their histories."""
        if self.route is not None:
            return self.route.scores()
        if self.bags.shape[1]:
            tokens = self.model.tokens(obs) if tokens is None else tokens
            return self.model.score_tokens(tokens, self.bags)
        if tokens is not None and self.model.reads_tokens:  # the policy's tokens: no second encoder pass
            return self.model.score_tokens(tokens)
        return self.model.score(obs)

    def __call__(
        self,
        obs,
        dones,
        tokens=None,
        start_states: dict[int, dict] | None = None,
        last_frames: dict[int, np.ndarray] | None = None,
    ):
        """Reward for the step that produced `obs` (with `dones` true where an episode ended and `obs`
        is already the next episode's first frame). `tokens`: the frames' tokens under the reward's
        own encoder, if the caller has them; `start_states` {env: episode_state} for done envs that
        restarted on a curriculum state; `last_frames` {env: frame} the ended episodes' last frames
        (`ended_frames(info)`), scored whatever the interval, so that an episode is paid what it
        gained since its last scored frame: finishing the game ends it on a frame no step shows.
        Returns (rewards (N,), scores (N,) on scored steps else None); `ended_best` then holds the ended
        episodes' best scores, their last frames' included."""
        self.steps += 1
        rewards = -np.full(len(dones), self.time_penalty, np.float32)
        self.ended_best = {}
        if last_frames:
            rewards += self.scale * self._final_gains(last_frames)
        self.episode_best[dones] = -np.inf
        tokens = self._see(obs, tokens, dones, start_states or {})
        rewards += self.novelty * self._new_screens(obs, dones, start_states or {})
        if self.steps % self.interval:
            self.baseline[dones] = np.nan
            return rewards, None
        scores = self.score(obs, tokens)
        self.episode_best = np.where(dones, -np.inf, np.fmax(self.episode_best, scores)).astype(np.float32)
        known = ~np.isnan(self.baseline) & ~dones
        gain = np.where(known, scores - self.baseline, 0.0)
        if self.from_best:
            gain = np.maximum(gain, 0.0)
        # fmax: a NaN baseline yields the score.
        kept = np.fmax(self.baseline, scores) if self.from_best else scores
        self.baseline = np.where(dones, np.nan, kept).astype(np.float32)
        rewards += self.scale * gain
        return rewards, scores

    def _final_gains(self, last_frames: dict[int, np.ndarray]) -> np.ndarray:
        """(N,) each ended episode's gain from its last frame (`last_frames` {env: frame}), seen with
        its history, over its baseline; 0 for the other envs and for an episode not yet scored."""
        ended = np.array(sorted(last_frames))
        frames = np.stack([last_frames[env] for env in ended])
        if self.route is not None or self.bags.shape[1]:
            tokens = map_batches(self.model.tokens, frames, LAST_FRAMES_BATCH, local=True)
            if self.route is not None:
                self.route.advance(tokens, ended)
                scores = self.route.scores()[ended]
            else:
                bags = self.bags[ended]
                mark_seen(bags, tokens)
                scores = map_batches(
                    lambda batch: self.model.score_tokens(*batch),
                    (tokens, bags),
                    LAST_FRAMES_BATCH,
                    local=True,
                )
        else:
            scores = map_batches(self.model.score, frames, LAST_FRAMES_BATCH, local=True)
        bests = np.fmax(self.episode_best[ended], scores)
        self.ended_best = {int(env): float(best) for env, best in zip(ended, bests)}
        gains = np.zeros(len(self.baseline), np.float32)
        gains[ended] = np.nan_to_num(scores - self.baseline[ended])  # NaN: no scored frame yet
        return np.maximum(gains, 0.0) if self.from_best else gains

    def state_dict(self) -> dict:
        return {
            "baseline": self.baseline.copy(),
            "steps": self.steps,
            "bags": self.bags.copy(),
            "route": None if self.route is None else self.route.positions.copy(),
        }

    def load_state_dict(self, state: dict):
        self.baseline = np.asarray(state["baseline"], np.float32).copy()
        self.steps = int(state["steps"])
        if state.get("bags") is not None:
            self.bags = np.asarray(state["bags"], np.uint8).copy()
        if self.route is not None and state.get("route") is not None:
            self.route.positions = np.asarray(state["route"], np.int32).copy()


def ended_frames(info: dict) -> dict[int, np.ndarray]:
    """{env: its ended episode's last frame} from a vector env step's info (`final_obs`)."""
    if "final_obs" not in info:
        return {}
    return {int(env): info["final_obs"][env] for env in np.flatnonzero(info["_final_obs"])}


def load_progress(path: str) -> LearnedProgress:
    """The reward model of a 'reward' checkpoint; a file of another kind exits with one line."""
    try:
        return LearnedProgress(load_reward(path))
    except CheckpointError as err:
        raise SystemExit(f"--reward-model: {err} (train one with train_reward.py)") from None
