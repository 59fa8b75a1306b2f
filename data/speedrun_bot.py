"""A scripted player of EmuQuest: a closed-loop bot that plays from power-on to the end.

The bot reads the game's RAM through the EmuQuest profile (mode, map, position, the 9x10
tile-kind grid; envs/games.py, envs/roms/emuquest/RAM.md), path-finds with BFS to the next
milestone's goal and fights or flees every wild battle. Seeded random detours, idle waits,
extra grass walks and talks with bystanders (mom, the town sign) make runs differ; every
random choice comes from generators seeded by the run's seed, so a seed always plays the
same run.

It can also branch off its run into random agent play (VecGameBoy's action set and timing)
and restore the emulator state afterwards, so the run itself is unchanged.
data/make_speedruns.py records runs with it; data/screenshots.py and tests drive it too.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pyboy import PyBoy

from envs.actions import ENV_ACTIONS, FRAME_SKIP, PRESS_FRAMES
from envs.games import EmuQuest

GAME = EmuQuest()
# Path-finding walks only on these: doors and exits are walkable too, but they warp, so
# the bot only steps onto one on purpose (as the goal of a path).
WALKABLE = (GAME.FLOOR, GAME.GRASS)
DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
BRANCH_ACTIONS = ENV_ACTIONS
BOOT_FRAMES = 70  # PyBoy's own boot runs ~65 frames before the game's _main
END_SCREEN_FRAMES = 90  # frames kept after the end screen appears


class Bot:
    """Plays EmuQuest frame by frame. `step` ticks one frame with the given buttons held."""

    def __init__(
        self,
        rom: Path,
        seed: int,
        detour_prob: float,
        idle_prob: float,
        max_idle_frames: int,
        extra_battles: int,
        max_frames: int,
        on_frame: Callable[[int, np.ndarray, tuple[str, ...]], None],
        chat_prob: float = 0.0,
        branch_every: int = 0,
        branch_steps: int = 8,
    ):
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
        self.chats = {map_id: who for map_id, who in GAME.BYSTANDERS.items() if self.rng.random() < chat_prob}
        # Branches draw from their own generator, so the run is the same with or without them.
        self.branch_rng = np.random.default_rng([seed, 1])
        self.branch_every, self.branch_steps = branch_every, branch_steps
        self.next_branch = 0
        self.branches: list[dict] = []  # one record per kept branch frame
        self.branch_frames: list[np.ndarray] = []

    # -- emulator ---------------------------------------------------------------------
    def step(self, buttons: tuple[str, ...] = ()) -> None:
        if self.frame >= self.max_frames:
            raise RuntimeError(
                f"speedrun seed {self.seed}: no end screen after {self.max_frames} "
                f"frames (milestones {self.milestones()}); raise --max-frames"
            )
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
            return "map", (GAME.TOWN,)
        if not bits & 0b100:
            return "talk", GAME.GUIDE
        if not bits & 0b1000:
            return "talk", GAME.PROF
        if not bits & 0b10000:
            return "talk", GAME.GATE_TILE
        if not bits & 0b100000:
            return "row", (GAME.ROUTE,)
        return "map", (GAME.FINAL,)

    @staticmethod
    def next_map(here: int, target: int) -> int:
        """First map on the shortest warp path from `here` to `target` (BFS over maps)."""
        parents = {here: here}
        queue = deque([here])
        while queue:
            current = queue.popleft()
            if current == target:
                break
            for neighbour in GAME.WARPS.get(current, {}):
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
        if (
            kind == "row"
            and here == GAME.ROUTE
            and m[GAME.BATTLES] < self.extra_battles
            and grid[y, x] == GAME.GRASS
        ):
            grass = [
                n
                for n, (dx, dy) in DIRECTIONS.items()
                if 0 <= x + dx < 10 and 0 <= y + dy < 9 and grid[y + dy, x + dx] == GAME.GRASS
            ]
            if grass:
                return str(self.rng.choice(grass))
        target_map = target[0]
        if here != target_map:
            goals = {GAME.WARPS[here][self.next_map(here, target_map)]}
        elif kind == "row":
            goals = {(gx, gy) for gy in range(3) for gx in range(10) if grid[gy, gx] == GAME.FLOOR}
        else:
            _, tx, ty = target
            adjacent = {(tx + dx, ty + dy) for dx, dy in DIRECTIONS.values()}
            if (x, y) in adjacent:
                # Face the target (a blocked step only turns), then press A.
                toward = next(n for n, d in DIRECTIONS.items() if d == (tx - x, ty - y))
                return "a" if GAME.FACING_NAMES[m[GAME.FACING]] == toward else toward
            goals = {
                (gx, gy) for gx, gy in adjacent if 0 <= gx < 10 and 0 <= gy < 9 and grid[gy, gx] in WALKABLE
            }
        path = self.bfs(grid, (x, y), goals)
        if not path:
            raise RuntimeError(f"speedrun seed {self.seed}: no path on map {here} from {(x, y)} to {goals}")
        return path[0]

    def random_walk(self, grid: np.ndarray, x: int, y: int, steps: int) -> list[str]:
        """A few random steps on plain floor or grass, returned reversed (popped from the end)."""
        walk = []
        for _ in range(steps):
            options = [
                (n, x + dx, y + dy)
                for n, (dx, dy) in DIRECTIONS.items()
                if 0 <= x + dx < 10 and 0 <= y + dy < 9 and grid[y + dy, x + dx] in WALKABLE
            ]
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
        state, cursor = m[GAME.BATTLE_STATE], m[GAME.CURSOR]
        if state == GAME.BATTLE_MENU:
            want = 1 if flee else 0
        elif state == GAME.BATTLE_MOVES:
            if self.rng.random() < 0.05:
                return "b"  # back out to FIGHT/RUN now and then, as a player might
            want = move
        else:
            return "a" if m[GAME.TEXT] == GAME.TEXT_WAITING else None
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
            self.branches.append(
                {
                    "start_frame": self.frame,
                    "start_mode": start_mode,
                    "step": step,
                    "action": name,
                    "emulator_frames": step * FRAME_SKIP,
                    "mode": m[GAME.MODE],
                    "map": m[GAME.MAP_ID],
                    "x": m[GAME.X],
                    "y": m[GAME.Y],
                }
            )
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
            if here in self.chats and self.chats[here][1] == m[GAME.TALK_ID]:
                del self.chats[here]  # talked: back to the route
            if m[GAME.TEXT] == GAME.TEXT_WAITING:
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
        elif m[GAME.WALK] > 1:
            self.step(self.held)  # keep holding the direction while the step animates
        elif m[GAME.WALK] == 1:
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
