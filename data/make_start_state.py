"""Make a start state: replay a text file of button presses from power-on and save the emulator state.

    uv run python data/make_start_state.py --presses envs/roms/emuquest/intro.presses \
        --out states/emuquest_after_intro.state
    uv run python train_with_cnn_reward.py --initial-state states/emuquest_after_intro.state ...

The presses file has one env step per press, in VecGameBoy's action names and timing (a button is held
for --press-frames of the step's --frame-skip frames). A line is an action, optionally `xN` to repeat
it N times; `#` starts a comment:

    start x3     # leave the title (extra presses are harmless there)
    a x40        # page through the intro text
    noop x5

With --milestone-dir, the state is also saved as milestone_<k>.state the first time the replay reaches
k milestones (games with a profile, such as EmuQuest and Pokémon Red), which gives a ladder of start
states along a route. --gif draws the replay, to see where a press file goes wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from PIL import Image
from tqdm import tqdm

from envs.actions import ACTION_NAMES, FRAME_SKIP, PRESS_FRAMES
from envs.games import EMUQUEST_ROM, detected_line
from envs.rom import RomError
from envs.vec_gameboy import VecGameBoy
from training.cli import fail, writable_dir
from training.io import atomic_path, atomic_write


@dataclass
class Args:
    """Replay button presses from power-on and save the state a run can start from."""

    presses: Path
    """Text file of presses: an action name per line (noop up down left right a b start select),
    optionally followed by xN to repeat it; # starts a comment."""
    out: Path
    """Where the state goes (a PyBoy state file, for --initial-state)."""
    rom: Path = EMUQUEST_ROM
    """Game Boy ROM (default: the embedded game EmuQuest)."""
    frame_skip: int = FRAME_SKIP
    """Emulator frames per press, as in training."""
    press_frames: int = PRESS_FRAMES
    """Frames a button is held at the start of each press."""
    milestone_dir: Path | None = None
    """Also save milestone_<k>.state here when the replay first reaches k milestones."""
    gif: Path | None = None
    """Write a GIF of the replay (one frame per press)."""


def parse_presses(text: str, source: str = "presses") -> list[int]:
    """Action indices from a presses file's text; a bad line is one error naming its number."""
    actions = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        name, *repeat = words
        count = repeat[0][1:] if repeat and repeat[0].startswith("x") else None
        if name.lower() not in ACTION_NAMES or len(repeat) > 1 or (repeat and not (count or "").isdigit()):
            raise ValueError(
                f"{source} line {number}: {line.strip()!r} is not an action ({', '.join(ACTION_NAMES)}) "
                "optionally followed by xN"
            )
        actions += [ACTION_NAMES.index(name.lower())] * (int(count) if count else 1)
    if not actions:
        raise ValueError(f"{source} holds no presses")
    return actions


def replay(args: Args, actions: list[int]) -> tuple[bytes, dict[int, bytes], list[Image.Image], dict]:
    """(the final state, {milestones: state when first reached}, frames, the detected game)."""
    use_select = ACTION_NAMES.index("select") in actions
    milestone_states, frames = {}, []
    with VecGameBoy(
        args.rom,
        num_envs=1,
        backend="serial",
        frame_skip=args.frame_skip,
        press_frames=args.press_frames,
        max_steps=len(actions) + 1,
        use_select=use_select,
    ) as env:
        print(detected_line(env.detected))
        obs, info = env.reset(seed=0)
        best = int(info["milestones"][0])
        for action in tqdm(actions, desc="presses"):
            obs, _, terminated, _, info = env.step([action])
            if terminated[0]:
                raise fail("the game ended during the replay; shorten the presses file")
            if args.gif:
                frames.append(Image.fromarray(obs[0]))
            milestones = int(info["milestones"][0])
            if milestones > best:
                best = milestones
                milestone_states[milestones] = env.save_states([0])[0]
        return env.save_states([0])[0], milestone_states, frames, env.detected


def main(args: Args) -> Path:
    if not args.presses.is_file():
        raise fail(f"--presses {args.presses}: no such file")
    try:
        actions = parse_presses(args.presses.read_text(), str(args.presses))
    except ValueError as err:
        raise fail(str(err)) from None
    writable_dir(args.out.parent, "--out")
    if args.milestone_dir:
        writable_dir(args.milestone_dir, "--milestone-dir")
    if args.gif:
        writable_dir(args.gif.parent, "--gif")
    try:
        state, milestone_states, frames, game = replay(args, actions)
    except (RomError, ValueError) as err:
        raise fail(f"--rom / env settings: {err}") from None
    atomic_write(args.out, state)
    for milestones, milestone_state in milestone_states.items() if args.milestone_dir else ():
        atomic_write(args.milestone_dir / f"milestone_{milestones}.state", milestone_state)
    if args.gif:
        with atomic_path(args.gif) as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    reached = "" if game["screen_only"] else f"; milestones reached {max(milestone_states, default=0)}"
    print(f"{len(actions)} presses replayed{reached}: saved {args.out}")
    if args.milestone_dir and milestone_states:
        names = ", ".join(f"milestone_{k}.state" for k in milestone_states)
        print(f"milestone states: {names} in {args.milestone_dir}")
    return args.out


if __name__ == "__main__":
    main(tyro.cli(Args))
