"""Every policy is bound to the cartridge it was trained on: its checkpoint records the ROM's title,
sha1 and path (never the ROM itself). Evaluation and --resume run on that ROM when --rom is left out,
and refuse another cartridge in one line unless --allow-other-rom."""

from __future__ import annotations

from pathlib import Path

from envs.games import EMUQUEST_ROM
from envs.rom import RomError, RomIdentity, check_rom
from training.cli import fail
from training.paths import path_for_checkpoint, path_from_checkpoint


def rom_record(rom: str | Path, checkpoint_dir: str | Path) -> dict:
    """What a checkpoint in `checkpoint_dir` stores about the ROM it was trained on."""
    identity = RomIdentity.of(Path(rom).read_bytes())
    return {**identity.to_dict(), "path": path_for_checkpoint(rom, checkpoint_dir)}


def bound_rom(rom_flag: str | None, record: dict | None, checkpoint: Path, allow_other: bool) -> Path:
    """The ROM to run a checkpoint on. `rom_flag`: --rom (None: the checkpoint's own ROM); `record`: the
    checkpoint's rom_record (None in checkpoints written before ROMs were recorded: --rom or EmuQuest)."""
    if record is None:
        return Path(rom_flag) if rom_flag else EMUQUEST_ROM
    trained_on = RomIdentity(record["title"], record["sha1"])
    if rom_flag is None:
        path = path_from_checkpoint(record["path"], checkpoint.parent)
        if not path.is_file() and trained_on == RomIdentity.of(EMUQUEST_ROM.read_bytes()):
            path = EMUQUEST_ROM  # the embedded game, from another clone
        if not path.is_file():
            raise fail(
                f"{checkpoint} was trained on {trained_on} at {path}, which is not there: "
                "pass --rom with that cartridge"
            )
    else:
        path = Path(rom_flag)
    try:
        given = RomIdentity.of(check_rom(path))
    except RomError as err:
        raise fail(f"--rom: {err}") from None
    if given.sha1 != trained_on.sha1:
        which = f"--rom {path}" if rom_flag else f"the recorded ROM {path}"
        message = f"{which} is {given}, but {checkpoint} was trained on {trained_on}"
        if not allow_other:
            raise fail(f"{message}: pass that cartridge, or --allow-other-rom to run on this one anyway")
        print(f"warning: {message} (--allow-other-rom)")
    return path
