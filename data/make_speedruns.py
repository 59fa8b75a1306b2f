"""Scripted speedruns of EmuQuest: a closed-loop bot that plays from power-on to the end.

The bot reads the game's RAM (mode, map, position, the 9x10 tile-kind grid; see
envs/roms/emuquest/RAM.md), path-finds with BFS to the next milestone's goal and fights
or flees every wild battle. Seeded random detours, idle waits, extra grass walks and talks
with bystanders (mom, the town sign) make runs differ. Each run writes every k-th frame as a
PNG, metadata.json (emulator frame index, milestone count, mode, map, talk id and buttons held
for each saved frame, plus every press), and an mp4 of all frames at 60 fps.

With --branch-every, the bot also branches off its run every so often: it saves the
emulator state, plays --branch-steps random agent steps (VecGameBoy's action set and
timing), keeps the frame after each, and restores the state, so the run itself is unchanged.
Each branch frame is paired with a run frame that train_reward.py --branches ranks it above
(D-REX-style ranked noise), which tells the reward what random play looks like next to the
route. --branch-pairing picks that frame: the run's frame from the same moment, or, for
branches that start in the overworld, the run's frame one agent step after the branch starts
(random walking rarely gets further in a whole branch than the bot does in one step; in text
boxes, battles and the title it can, so those keep the same moment).

    uv run python data/make_speedruns.py --num-runs 5 --frame-every 4
    uv run python data/make_speedruns.py --branch-every 48 --branch-steps 24   # the main job's
"""

from __future__ import annotations

import io
import json
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np
import tyro
from pyboy import PyBoy
from tqdm import tqdm

from envs.games import EMUQUEST_ROM, EmuQuest, read_cart_title
from envs.vec_gameboy import ACTION_NAMES, FRAME_SKIP, PRESS_FRAMES

GAME = EmuQuest()
BranchPairing = Literal["same-moment", "first-step"]

# RAM beyond the profile's fixed block (envs/roms/emuquest/RAM.md).
WALK = 0xC008  # frames left in the current step, 0 = standing
TEXT = 0xC009  # 2 = a text page is complete and waits for A
TALK_ID = 0xC00A  # who is talking: 1 mom, 2 sign, 3 guide, 4 prof, 5 gate
BATTLE_STATE = 0xC00B  # 1 text, 2 FIGHT/RUN menu, 3 move menu
CURSOR = 0xC00C
BATTLES = 0xC06F  # wild battles started so far
TEXT_WAITING = 2
BATTLE_MENU, BATTLE_MOVES = 2, 3

# Tile kinds in the grid.
FLOOR, WALL, GRASS, DOOR, EXIT, NPC, GATE, SIGN = range(8)
WALKABLE = (FLOOR, GRASS)  # doors and exits are only entered on purpose: they warp

HOUSE, TOWN, LAB, ROUTE, FOREST, FINAL = range(6)
# Warp tiles that lead from one map to a neighbouring one.
WARPS = {
    HOUSE: {TOWN: (4, 8)},
    TOWN: {HOUSE: (2, 4), LAB: (7, 4), ROUTE: (4, 0)},
    LAB: {TOWN: (5, 8)},
    ROUTE: {TOWN: (4, 8), FOREST: (5, 0)},
    FOREST: {ROUTE: (5, 8), FINAL: (5, 1)},
}
GUIDE, PROF, GATE_TILE = (TOWN, 5, 2), (LAB, 4, 2), (TOWN, 4, 1)
# Bystanders: map -> (tile kind to face, talk id). Talking to them is not progress.
BYSTANDERS = {HOUSE: (NPC, 1), TOWN: (SIGN, 2)}
DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
FACING_NAMES = ("down", "up", "left", "right")
BRANCH_ACTIONS = ACTION_NAMES[:-1]  # VecGameBoy's default action set (no SELECT)
BOOT_FRAMES = 70  # PyBoy's own boot runs ~65 frames before the game's _main
END_SCREEN_FRAMES = 90  # frames kept after the end screen appears


@dataclass
class Args:
    num_runs: int = 5
    """Number of runs to record (run_00, run_01, ...)."""
    seed: int = 0
    """Seed of the first run; run i uses seed + i."""
    frame_every: int = 4
    """Save every k-th emulator frame as a PNG (the mp4 keeps every frame)."""
    detour_prob: float = 0.05
    """Chance, at each standing step, of a random walk of 1-4 steps off the route."""
    idle_prob: float = 0.03
    """Chance, at each decision, of waiting a while with no buttons."""
    max_idle_frames: int = 60
    """Longest idle wait, in frames."""
    extra_battles: int = 0
    """Before crossing the tall grass, pace in it until this many wild battles have happened."""
    chat_prob: float = 0.5
    """Chance, per run and bystander (mom in the house, the sign in town), of talking to it on
    the way. Without these talks every text box in the runs comes with progress, and a reward
    model learns to overrate any text box (PPO then held mom's open)."""
    branch_every: int = 0
    """Branch off the run into random play every this many emulator frames, at the bot's
    next decision (0: no branches). Branch frames go to <out>/branches/run_XX/."""
    branch_steps: int = 8
    """Agent steps (of FRAME_SKIP frames) per branch; the frame after every step is kept."""
    branch_pairing: BranchPairing = "same-moment"
    """The run frame each branch frame ranks below: the one from the same moment, or (overworld
    branches only; the rest keep the same moment) the one a single agent step after the branch
    starts. PPO did worse with first-step (BENCHMARKS.md), so the main job keeps same-moment."""
    max_frames: int = 30_000
    """Give up on a run that has not reached the end screen after this many frames."""
    out: Path = Path("data/speedruns")
    """Output root: frames/run_XX/*.png + metadata.json, and videos/run_XX.mp4."""
    rom: Path = EMUQUEST_ROM
    """The EmuQuest ROM."""


@dataclass
class Speedrun:
    frames: np.ndarray  # (num_saved, 144, 160, 3) uint8, every frame_every-th frame
    metadata: dict = field(default_factory=dict)
    branches: list[dict] = field(default_factory=list)  # per branch frame: where it starts and ends, and the run frame it ranks below
    branch_frames: np.ndarray | None = None  # (num_branch_frames, 144, 160, 3) uint8


class Bot:
    """Plays EmuQuest frame by frame. `step` ticks one frame with the given buttons held."""

    def __init__(self, rom: Path, seed: int, detour_prob: float, idle_prob: float,
                 max_idle_frames: int, extra_battles: int, max_frames: int,
                 on_frame: Callable[[int, np.ndarray, tuple[str, ...]], None], chat_prob: float = 0.0,
                 branch_every: int = 0, branch_steps: int = 8):
        self.pyboy = PyBoy(str(rom), window="null", sound_emulated=False)
        self.memory = self.pyboy.memory
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.detour_prob, self.idle_prob = detour_prob, idle_prob
        self.max_idle_frames, self.extra_battles = max_idle_frames, extra_battles
        self.max_frames = max_frames
        self.on_frame = on_frame
        self.frame = 0
        self.held: tuple[str, ...] = ()
        # Every button press: the frame it starts, the button, how many frames it was held.
        self.presses: list[dict] = []
        self.open_presses: dict[str, int] = {}  # held button -> its index in presses
        self.milestone_frames: dict[str, int] = {}
        self.detour: list[str] = []
        # Per battle: flee (True) or fight, and which move; drawn when a battle starts.
        self.battle_plan: tuple[bool, int] | None = None
        # Bystanders still to talk to in this run: map -> (tile kind, talk id).
        self.chats = {map_id: who for map_id, who in BYSTANDERS.items() if self.rng.random() < chat_prob}
        # Branches draw from their own generator, so the run is the same with or without them.
        self.branch_rng = np.random.default_rng([seed, 1])
        self.branch_every, self.branch_steps = branch_every, branch_steps
        self.next_branch = 0
        self.branches: list[dict] = []  # one record per kept branch frame
        self.branch_frames: list[np.ndarray] = []

    # -- emulator ---------------------------------------------------------------------
    def step(self, buttons: tuple[str, ...] = ()) -> None:
        if self.frame >= self.max_frames:
            raise RuntimeError(f"speedrun seed {self.seed}: no end screen after {self.max_frames} "
                               f"frames (milestones {self.milestones()}); raise --max-frames")
        for name in self.held:
            if name not in buttons:
                self.pyboy.button_release(name)
                press = self.presses[self.open_presses.pop(name)]
                press["frames_held"] = self.frame - press["frame"]
        for name in buttons:
            if name not in self.held:
                self.pyboy.button_press(name)
                self.open_presses[name] = len(self.presses)
                self.presses.append({"frame": self.frame, "button": name, "frames_held": None})
        self.held = buttons
        self.pyboy.tick(1, True)
        self.on_frame(self.frame, self.pyboy.screen.ndarray[:, :, :3], buttons)
        for i, name in enumerate(GAME.milestone_names):
            if self.memory[GAME.MILESTONES] >> i & 1 and name not in self.milestone_frames:
                self.milestone_frames[name] = self.frame
        self.frame += 1

    def press(self, button: str, hold: int = 2) -> None:
        """Hold a button for `hold` frames, then release it for 2 so the next press is new."""
        for _ in range(hold):
            self.step((button,))
        for _ in range(2):
            self.step()

    def idle(self, chance: float) -> None:
        if self.rng.random() < chance:
            for _ in range(int(self.rng.integers(1, self.max_idle_frames + 1))):
                self.step()

    def milestones(self) -> int:
        return GAME.status(self.memory).milestones

    def grid(self) -> np.ndarray:
        return np.array([self.memory[GAME.GRID + i] for i in range(90)], np.uint8).reshape(9, 10)

    # -- planning ---------------------------------------------------------------------
    def goal(self) -> tuple[str, tuple]:
        """The next goal: a pending bystander on this map, else the next milestone's:
        ('map', target map), ('talk', (map, x, y)) or ('row', map)."""
        here = self.memory[GAME.MAP_ID]
        if here in self.chats:
            kind, _ = self.chats[here]
            ys, xs = np.nonzero(self.grid() == kind)
            if len(xs):
                return "talk", (here, int(xs[0]), int(ys[0]))
        bits = self.memory[GAME.MILESTONES]
        if not bits & 0b10:
            return "map", (TOWN,)
        if not bits & 0b100:
            return "talk", GUIDE
        if not bits & 0b1000:
            return "talk", PROF
        if not bits & 0b10000:
            return "talk", GATE_TILE
        if not bits & 0b100000:
            return "row", (ROUTE,)
        return "map", (FINAL,)

    @staticmethod
    def next_map(here: int, target: int) -> int:
        """First map on the shortest warp path from `here` to `target` (BFS over maps)."""
        parents = {here: here}
        queue = deque([here])
        while queue:
            current = queue.popleft()
            if current == target:
                break
            for neighbour in WARPS.get(current, {}):
                if neighbour not in parents:
                    parents[neighbour] = current
                    queue.append(neighbour)
        step = target
        while parents[step] != here:
            step = parents[step]
        return step

    @staticmethod
    def bfs(grid: np.ndarray, start: tuple[int, int], goals: set[tuple[int, int]]) -> list[str]:
        """Button names of a shortest walk from start to any goal tile (goals may be warps)."""
        parents: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {start: None}
        queue = deque([start])
        while queue:
            x, y = queue.popleft()
            if (x, y) in goals:
                path = []
                node = (x, y)
                while parents[node] is not None:
                    node, direction = parents[node]
                    path.append(direction)
                return path[::-1]
            for name, (dx, dy) in DIRECTIONS.items():
                nx, ny = x + dx, y + dy
                if not (0 <= nx < 10 and 0 <= ny < 9) or (nx, ny) in parents:
                    continue
                if grid[ny, nx] in WALKABLE or (nx, ny) in goals:
                    parents[(nx, ny)] = ((x, y), name)
                    queue.append((nx, ny))
        return []

    def overworld_move(self, goal: tuple[str, tuple]) -> str:
        """The button to press now: a direction to walk or turn, or 'a' to talk."""
        m = self.memory
        here, x, y = m[GAME.MAP_ID], m[GAME.X], m[GAME.Y]
        grid = self.grid()
        if self.detour:
            return self.detour.pop()
        if self.rng.random() < self.detour_prob:
            self.detour = self.random_walk(grid, x, y, int(self.rng.integers(1, 5)))
            if self.detour:
                return self.detour.pop()
        kind, target = goal
        if kind == "row" and here == ROUTE and m[BATTLES] < self.extra_battles and grid[y, x] == GRASS:
            grass = [n for n, (dx, dy) in DIRECTIONS.items()
                     if 0 <= x + dx < 10 and 0 <= y + dy < 9 and grid[y + dy, x + dx] == GRASS]
            if grass:
                return str(self.rng.choice(grass))
        target_map = target[0]
        if here != target_map:
            goals = {WARPS[here][self.next_map(here, target_map)]}
        elif kind == "row":
            goals = {(gx, gy) for gy in range(3) for gx in range(10) if grid[gy, gx] == FLOOR}
        else:
            _, tx, ty = target
            adjacent = {(tx + dx, ty + dy) for dx, dy in DIRECTIONS.values()}
            if (x, y) in adjacent:
                # Face the target (a blocked step only turns), then press A.
                toward = next(n for n, d in DIRECTIONS.items() if d == (tx - x, ty - y))
                return "a" if FACING_NAMES[m[GAME.FACING]] == toward else toward
            goals = {(gx, gy) for gx, gy in adjacent
                     if 0 <= gx < 10 and 0 <= gy < 9 and grid[gy, gx] in WALKABLE}
        path = self.bfs(grid, (x, y), goals)
        if not path:
            raise RuntimeError(f"speedrun seed {self.seed}: no path on map {here} from {(x, y)} to {goals}")
        return path[0]

    def random_walk(self, grid: np.ndarray, x: int, y: int, steps: int) -> list[str]:
        """A few random steps on plain floor or grass, returned reversed (popped from the end)."""
        walk = []
        for _ in range(steps):
            options = [(n, x + dx, y + dy) for n, (dx, dy) in DIRECTIONS.items()
                       if 0 <= x + dx < 10 and 0 <= y + dy < 9 and grid[y + dy, x + dx] in WALKABLE]
            if not options:
                break
            name, x, y = options[int(self.rng.integers(len(options)))]
            walk.append(name)
        return walk[::-1]

    def battle_move(self) -> str | None:
        m = self.memory
        if self.battle_plan is None:
            self.battle_plan = (bool(self.rng.random() < 0.3), int(self.rng.integers(2)))
        flee, move = self.battle_plan
        state, cursor = m[BATTLE_STATE], m[CURSOR]
        if state == BATTLE_MENU:
            want = 1 if flee else 0
        elif state == BATTLE_MOVES:
            if self.rng.random() < 0.05:
                return "b"  # back out to FIGHT/RUN now and then, as a player might
            want = move
        else:
            return "a" if m[TEXT] == TEXT_WAITING else None
        if cursor != want:
            return "down" if want > cursor else "up"
        return "a"

    def branch(self) -> None:
        """Random play from the current state for branch_steps agent steps, the frame after each
        recorded, then the state is restored. No frame of it reaches on_frame or the presses log."""
        saved = io.BytesIO()
        self.pyboy.save_state(saved)
        m = self.memory
        start_mode = m[GAME.MODE]
        for step in range(1, self.branch_steps + 1):  # one VecGameBoy step each; its last frame is rendered
            name = BRANCH_ACTIONS[self.branch_rng.integers(len(BRANCH_ACTIONS))]
            if name != "noop":
                self.pyboy.button_press(name)
            self.pyboy.tick(PRESS_FRAMES, False)
            if name != "noop":
                self.pyboy.button_release(name)
            self.pyboy.tick(FRAME_SKIP - PRESS_FRAMES, True)
            self.branches.append({"start_frame": self.frame, "start_mode": start_mode, "step": step, "action": name,
                                  "emulator_frames": step * FRAME_SKIP, "mode": m[GAME.MODE],
                                  "map": m[GAME.MAP_ID], "x": m[GAME.X], "y": m[GAME.Y]})
            self.branch_frames.append(self.pyboy.screen.ndarray[:, :, :3].copy())
        saved.seek(0)
        self.pyboy.load_state(saved)
        self.next_branch = self.frame + self.branch_every

    # -- main loop ----------------------------------------------------------------------
    def boot(self) -> None:
        """Power on and wait on the title screen for a seeded while, so each run has its own rng."""
        for _ in range(BOOT_FRAMES):
            self.step()
        self.idle(1.0)

    def advance(self, goal: tuple[str, tuple] | None = None) -> None:
        """One decision (a frame or a button press) towards `goal` (default: the next milestone's)."""
        m = self.memory
        if self.branch_every and not self.held and self.frame >= self.next_branch:
            self.branch()
        mode = m[GAME.MODE]
        if mode == GAME.MODE_TITLE:
            self.press("start")
        elif mode == GAME.MODE_DIALOGUE:
            here = m[GAME.MAP_ID]
            if here in self.chats and self.chats[here][1] == m[TALK_ID]:
                del self.chats[here]  # talked: back to the route
            if m[TEXT] == TEXT_WAITING:
                self.idle(self.idle_prob)
                self.press("a")
            else:
                self.step()
        elif mode == GAME.MODE_BATTLE:
            button = self.battle_move()
            if button is None:
                self.step()
            else:
                self.press(button)
        elif m[WALK] > 1:
            self.step(self.held)  # keep holding the direction while the step animates
        elif m[WALK] == 1:
            # The step is ending (a warp or battle may be setting up): let go, so the
            # held direction does not carry into the next map.
            self.step()
        else:
            self.battle_plan = None
            self.idle(self.idle_prob)
            button = self.overworld_move(goal or self.goal())
            if button == "a":
                self.press("a")
            else:
                self.step((button,))

    def play(self) -> None:
        self.boot()
        while self.memory[GAME.MODE] != GAME.MODE_END:
            self.advance()
        for _ in range(END_SCREEN_FRAMES):
            self.step()

    def close(self) -> None:
        self.pyboy.stop(save=False)



def run_speedrun(seed: int, rom: Path = EMUQUEST_ROM, frame_every: int = 4, detour_prob: float = 0.05,
                 idle_prob: float = 0.03, max_idle_frames: int = 60, extra_battles: int = 0,
                 chat_prob: float = 0.5, max_frames: int = 30_000,
                 on_frame: Callable[[int, np.ndarray], None] | None = None,
                 branch_every: int = 0, branch_steps: int = 8,
                 branch_pairing: BranchPairing = "same-moment") -> Speedrun:
    """Play one run from power-on to the end screen.

    Returns the saved frames (every `frame_every`-th), their metadata, and the branch frames
    and their records if `branch_every` > 0 (`branch_pairing` as in Args); `on_frame`, if given,
    also sees every frame of the run (e.g. to write a video)."""
    if branch_pairing not in get_args(BranchPairing):
        raise ValueError(f"branch_pairing must be one of {get_args(BranchPairing)}, got {branch_pairing!r}")
    saved: list[np.ndarray] = []
    records: list[dict] = []
    bot: Bot

    def keep(frame: int, rgb: np.ndarray, buttons: tuple[str, ...]) -> None:
        if on_frame is not None:
            on_frame(frame, rgb)
        if frame % frame_every == 0:
            records.append({"file": f"{len(saved):06d}.png", "frame": frame,
                            "milestones": bot.milestones(), "mode": bot.memory[GAME.MODE],
                            "map": bot.memory[GAME.MAP_ID], "talk": bot.memory[TALK_ID],
                            "buttons": list(buttons)})
            saved.append(rgb.copy())

    bot = Bot(rom, seed, detour_prob, idle_prob, max_idle_frames, extra_battles, max_frames, keep, chat_prob,
              branch_every, branch_steps)
    try:
        bot.play()
    finally:
        bot.close()
    metadata = {
        "seed": seed,
        "frame_every": frame_every,
        "num_frames": bot.frame,
        "milestones": bot.milestones(),
        "steps": bot.memory[GAME.STEPS_LO] | bot.memory[GAME.STEPS_HI] << 8,
        "battles": bot.memory[BATTLES],
        "milestone_frames": bot.milestone_frames,
        "frames": records,
        "presses": bot.presses,
        "num_branch_frames": len(bot.branches),
    }
    for number, record in enumerate(bot.branches):
        # The run's saved frame from the moment the branch frame was taken, or from one step
        # into the branch (the end screen if the run ends first).
        ahead = record["emulator_frames"]
        if branch_pairing == "first-step" and record["start_mode"] == GAME.MODE_OVERWORLD:
            ahead = FRAME_SKIP
        moment = -(-(record["start_frame"] + ahead) // frame_every)
        # start: the run's last saved frame before the branch left it (what it has seen so far).
        record.update(file=f"{number:06d}.png", below=records[min(moment, len(records) - 1)]["file"],
                      start=records[min(record["start_frame"] // frame_every, len(records) - 1)]["file"])
    branch_frames = np.stack(bot.branch_frames) if bot.branch_frames else None
    return Speedrun(np.stack(saved), metadata, bot.branches, branch_frames)


def write_run(args: Args, index: int, pool: ThreadPoolExecutor) -> dict:
    """Record run `index` into <out>/frames/run_XX and <out>/videos/run_XX.mp4 (and its branches
    into <out>/branches/run_XX), atomically."""
    name = f"run_{index:02d}"
    frames_dir, videos_dir, branches_dir = args.out / "frames", args.out / "videos", args.out / "branches"
    tmp_dir = frames_dir / f".{name}.tmp"
    tmp_video = videos_dir / f".{name}.tmp.mp4"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    videos_dir.mkdir(parents=True, exist_ok=True)
    video = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), 60, (160, 144))
    if not video.isOpened():
        raise SystemExit(f"make_speedruns.py: OpenCV cannot write {tmp_video}")
    pending = []
    png_count = 0

    def on_frame(frame: int, rgb: np.ndarray) -> None:
        nonlocal png_count
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        video.write(bgr)
        if frame % args.frame_every == 0:
            path = tmp_dir / f"{png_count:06d}.png"
            pending.append(pool.submit(cv2.imwrite, str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]))
            png_count += 1

    try:
        run = run_speedrun(args.seed + index, args.rom, args.frame_every, args.detour_prob,
                           args.idle_prob, args.max_idle_frames, args.extra_battles,
                           args.chat_prob, args.max_frames, on_frame, args.branch_every, args.branch_steps,
                           args.branch_pairing)
    finally:
        video.release()
    (tmp_dir / "metadata.json").write_text(json.dumps(run.metadata, indent=1))
    tmp_branches = branches_dir / f".{name}.tmp"
    shutil.rmtree(tmp_branches, ignore_errors=True)
    if run.branches:
        tmp_branches.mkdir(parents=True)
        for record, rgb in zip(run.branches, run.branch_frames):
            path = tmp_branches / record["file"]
            pending.append(pool.submit(cv2.imwrite, str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_PNG_COMPRESSION, 1]))
        (tmp_branches / "metadata.json").write_text(json.dumps({"run": name, "branches": run.branches}, indent=1))
    if not all(f.result() for f in pending):
        raise SystemExit(f"make_speedruns.py: could not write PNGs under {tmp_dir} or {tmp_branches}")
    for tmp, final in ((tmp_dir, frames_dir / name), (tmp_branches, branches_dir / name)):
        shutil.rmtree(final, ignore_errors=True)  # a stale branches dir would pair with the wrong run
        if tmp.is_dir():
            tmp.rename(final)
    tmp_video.replace(videos_dir / f"{name}.mp4")
    return run.metadata


def main(args: Args) -> None:
    if not args.rom.is_file():
        raise SystemExit(f"make_speedruns.py: --rom {args.rom} does not exist; build it with "
                         "envs/roms/emuquest/build.sh")
    title = read_cart_title(args.rom.read_bytes())
    if title != GAME.cart_title:
        raise SystemExit(f"make_speedruns.py: --rom {args.rom} is {title!r}, not {GAME.cart_title}; "
                         "the bot only knows EmuQuest")
    if args.num_runs < 1 or args.frame_every < 1 or args.max_idle_frames < 1:
        raise SystemExit("make_speedruns.py: --num-runs, --frame-every and --max-idle-frames must be >= 1")
    if args.branch_every < 0 or args.branch_steps < 1:
        raise SystemExit("make_speedruns.py: --branch-every must be >= 0 and --branch-steps >= 1")
    if not all(0 <= p <= 1 for p in (args.detour_prob, args.idle_prob, args.chat_prob)):
        raise SystemExit("make_speedruns.py: --detour-prob, --idle-prob and --chat-prob must lie in [0, 1]")
    with ThreadPoolExecutor(2) as pool:
        bar = tqdm(range(args.num_runs), desc="speedruns", unit="run")
        for index in bar:
            try:
                meta = write_run(args, index, pool)
            except RuntimeError as error:
                raise SystemExit(f"make_speedruns.py: {error}") from None
            bar.set_postfix(frames=meta["num_frames"], battles=meta["battles"])
            tqdm.write(f"run_{index:02d}: {meta['num_frames']} frames "
                       f"({meta['num_frames'] / 60:.1f} s), {meta['steps']} steps, "
                       f"{meta['battles']} battles, {meta['num_branch_frames']} branch frames, "
                       f"milestones {meta['milestones']}/{GAME.num_milestones}")


if __name__ == "__main__":
    main(tyro.cli(Args))
