"""The scripted speedrun bot: it finishes EmuQuest, is deterministic per seed, and its CLI
writes PNGs, metadata and an mp4 that agree with each other."""

import hashlib
import json

import cv2
import pytest

from data.make_speedruns import Args, main, run_speedrun
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.rom import header_checksum

GAME = EmuQuest()


def frames_hash(run) -> str:
    return hashlib.sha1(run.frames.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def run_seed0():
    return run_speedrun(0, frame_every=4, detour_prob=0.1, idle_prob=0.05, extra_battles=1, chat_prob=1.0)


def test_bot_reaches_the_end_screen(run_seed0):
    meta = run_seed0.metadata
    assert meta["milestones"] == GAME.num_milestones
    assert list(meta["milestone_frames"]) == list(GAME.milestone_names)
    assert sorted(meta["milestone_frames"].values()) == list(meta["milestone_frames"].values())
    assert meta["battles"] >= 1  # extra_battles=1 paces the grass until one starts
    records = meta["frames"]
    assert len(records) == len(run_seed0.frames) == -(-meta["num_frames"] // 4)
    assert [r["frame"] for r in records] == list(range(0, meta["num_frames"], 4))
    counts = [r["milestones"] for r in records]
    assert counts == sorted(counts) and counts[-1] == GAME.num_milestones
    assert records[-1]["mode"] == GAME.MODE_END
    assert {r["mode"] for r in records} >= {
        GAME.MODE_TITLE,
        GAME.MODE_DIALOGUE,
        GAME.MODE_OVERWORLD,
        GAME.MODE_BATTLE,
    }
    presses = meta["presses"]
    assert {p["button"] for p in presses} >= {"start", "a", "up", "down", "left", "right"}
    assert all(p["frames_held"] >= 1 for p in presses)
    assert [p["frame"] for p in presses] == sorted(p["frame"] for p in presses)
    held = {r["frame"]: r["buttons"] for r in records}
    for p in presses[:50]:  # a saved frame inside a press shows that button held
        inside = [f for f in range(p["frame"], p["frame"] + p["frames_held"]) if f in held]
        assert all(p["button"] in held[f] for f in inside)
    assert run_seed0.frames.shape[1:] == (144, 160, 3)


def test_same_seed_same_frames_other_seed_differs(run_seed0):
    again = run_speedrun(0, frame_every=4, detour_prob=0.1, idle_prob=0.05, extra_battles=1, chat_prob=1.0)
    assert frames_hash(again) == frames_hash(run_seed0)
    assert again.metadata == run_seed0.metadata
    other = run_speedrun(1, frame_every=4, detour_prob=0.1, idle_prob=0.05, extra_battles=1, chat_prob=0.0)
    assert frames_hash(other) != frames_hash(run_seed0)
    assert other.metadata["milestones"] == GAME.num_milestones
    assert {r["talk"] for r in other.metadata["frames"]} <= {0, 3, 4, 5}  # no bystander at chat_prob 0


BRANCHED = dict(
    frame_every=4,
    detour_prob=0.1,
    idle_prob=0.05,
    extra_battles=1,
    chat_prob=1.0,
    branch_every=500,
    branch_steps=3,
)


@pytest.fixture(scope="module")
def branched_seed0():
    return run_speedrun(0, **BRANCHED)


def test_branches_leave_the_run_unchanged(run_seed0, branched_seed0):
    """Random-play branches restore the emulator state: the run is the same frame for frame,
    and every branch frame is paired with the run frame from the moment it was taken."""
    branched = branched_seed0
    assert frames_hash(branched) == frames_hash(run_seed0)
    assert {k: v for k, v in branched.metadata.items() if k != "num_branch_frames"} == {
        k: v for k, v in run_seed0.metadata.items() if k != "num_branch_frames"
    }
    records, branches = run_seed0.metadata["frames"], branched.branches
    assert len(branches) == len(branched.branch_frames) == branched.metadata["num_branch_frames"]
    assert len(branches) % 3 == 0 and len(branches) >= 3 * (run_seed0.metadata["num_frames"] // 500)
    starts = [b["start_frame"] for b in branches[::3]]
    assert all(later - earlier >= 500 for earlier, later in zip(starts, starts[1:]))
    frame_of = {r["file"]: r["frame"] for r in records}
    for branch in branches:
        moment = branch["start_frame"] + branch["emulator_frames"]
        assert branch["emulator_frames"] == 30 * branch["step"]
        assert frame_of[branch["below"]] == min(-(-moment // 4) * 4, records[-1]["frame"])
    # Random play moves away from the run: some branch frame differs from its run frame.
    index_of = {r["file"]: i for i, r in enumerate(records)}
    assert any(
        (frame != run_seed0.frames[index_of[b["below"]]]).any()
        for b, frame in zip(branches, branched.branch_frames)
    )


def test_first_step_pairing(run_seed0, branched_seed0):
    """--branch-pairing first-step plays the same branches, and pairs the frames of a branch that
    starts in the overworld with the run frame one agent step after its start; the others keep
    the same moment."""
    tight = run_speedrun(0, **BRANCHED, branch_pairing="first-step")
    assert frames_hash(tight) == frames_hash(run_seed0)
    assert (tight.branch_frames == branched_seed0.branch_frames).all()
    records = run_seed0.metadata["frames"]
    frame_of = {r["file"]: r["frame"] for r in records}
    modes = {b["start_mode"] for b in tight.branches}
    assert GAME.MODE_OVERWORLD in modes and len(modes) > 1  # both kinds of branch are checked
    for branch, same_moment in zip(tight.branches, branched_seed0.branches):
        assert {k: v for k, v in branch.items() if k != "below"} == {
            k: v for k, v in same_moment.items() if k != "below"
        }
        if branch["start_mode"] == GAME.MODE_OVERWORLD:
            moment = branch["start_frame"] + 30
            assert frame_of[branch["below"]] == min(-(-moment // 4) * 4, records[-1]["frame"])
        else:
            assert branch["below"] == same_moment["below"]
    assert any(b["below"] != s["below"] for b, s in zip(tight.branches, branched_seed0.branches))
    with pytest.raises(ValueError, match="branch_pairing"):
        run_speedrun(0, **BRANCHED, branch_pairing="first_step")


def test_bystander_talks_are_not_progress(run_seed0):
    """At chat_prob 1 the bot reads mom's text in the house and the sign's in town, between
    milestones, so text boxes in the runs do not all come with progress."""
    records = run_seed0.metadata["frames"]
    mom = [r for r in records if r["talk"] == 1 and r["mode"] == GAME.MODE_DIALOGUE]
    sign = [r for r in records if r["talk"] == 2 and r["mode"] == GAME.MODE_DIALOGUE]
    assert mom and {(r["map"], r["milestones"]) for r in mom} == {(GAME.HOUSE, 1)}
    assert sign and {(r["map"], r["milestones"]) for r in sign} == {(GAME.TOWN, 2)}


def test_cli_writes_pngs_metadata_and_video(tmp_path):
    main(Args(num_runs=1, seed=3, frame_every=8, branch_every=600, branch_steps=2, out=tmp_path))
    run_dir = tmp_path / "frames" / "run_00"
    meta = json.loads((run_dir / "metadata.json").read_text())
    pngs = sorted(run_dir.glob("*.png"))
    assert [p.name for p in pngs] == [r["file"] for r in meta["frames"]]
    first = cv2.imread(str(pngs[0]))
    assert first.shape == (144, 160, 3)
    video = cv2.VideoCapture(str(tmp_path / "videos" / "run_00.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == meta["num_frames"]
    assert video.get(cv2.CAP_PROP_FPS) == 60
    video.release()
    branch_meta = json.loads((tmp_path / "branches" / "run_00" / "metadata.json").read_text())
    branches = branch_meta["branches"]
    assert len(branches) == meta["num_branch_frames"] > 0
    assert sorted(p.name for p in (tmp_path / "branches" / "run_00").glob("*.png")) == [
        b["file"] for b in branches
    ]
    assert {b["below"] for b in branches} <= {p.name for p in pngs}
    assert not list(tmp_path.rglob("*.tmp*"))  # temporary names were renamed away
    main(Args(num_runs=1, seed=3, frame_every=8, out=tmp_path))  # again without branches: the stale ones go
    assert not (tmp_path / "branches" / "run_00").exists()


def test_cli_refuses_a_missing_or_foreign_rom(tmp_path):
    with pytest.raises(SystemExit, match="--rom"):
        main(Args(rom=tmp_path / "missing.gb", out=tmp_path))
    foreign = tmp_path / "other.gb"
    rom = bytearray(bytes(0x134) + b"OTHERGAME" + bytes(32 * 1024 - 0x134 - 9))
    rom[0x14D] = header_checksum(rom)  # a valid cartridge of another game
    foreign.write_bytes(bytes(rom))
    with pytest.raises(SystemExit, match="OTHERGAME"):
        main(Args(rom=foreign, out=tmp_path))


def test_a_rom_with_a_bad_header_checksum_is_one_line(tmp_path):
    rom = bytearray(EMUQUEST_ROM.read_bytes())
    rom[0x14D] ^= 0xFF
    (tmp_path / "bad.gb").write_bytes(bytes(rom))
    with pytest.raises(SystemExit, match=r"make_speedruns.py: --rom: ROM .*bad.gb has a bad header checksum"):
        main(Args(rom=tmp_path / "bad.gb", out=tmp_path / "out"))
