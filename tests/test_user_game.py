"""The path a user's own ROM takes, run on EmuQuest as that user's cartridge: start states made by
replaying presses, --initial-state in PPO and evaluation, and policies bound to the ROM they trained on."""

import shutil

import pytest
from test_games import with_title
from test_ppo import reward_path, tiny_args  # noqa: F401  (reward_path is a fixture)

import evaluate_policy
import train_with_cnn_reward as ppo
from data import make_start_state
from envs.games import EMUQUEST_ROM, EmuQuest
from envs.rom import RomIdentity, check_rom
from envs.vec_gameboy import VecGameBoy
from models.checkpoint import load_checkpoint
from training.rom_binding import bound_rom, rom_record

INTRO_PRESSES = EMUQUEST_ROM.parent / "intro.presses"


def test_presses_parse_with_repeats_and_comments():
    text = "# skip the title\nstart x3   # three presses\n\nA\nnoop x2\n"
    assert make_start_state.parse_presses(text) == [7, 7, 7, 5, 0, 0]
    for bad in ("jump", "a x", "a 3", "a x2 x3", "# nothing\n"):
        with pytest.raises(ValueError, match="line 1|holds no presses"):
            make_start_state.parse_presses(bad)


@pytest.fixture(scope="module")
def start_states(tmp_path_factory):
    """EmuQuest's intro replayed from power-on: the state after it, and the milestone ladder."""
    out = tmp_path_factory.mktemp("states")
    make_start_state.main(
        make_start_state.Args(
            presses=INTRO_PRESSES, out=out / "after_intro.state", milestone_dir=out, gif=out / "replay.gif"
        )
    )
    return out


def test_the_intro_replay_saves_a_state_past_the_intro(start_states):
    assert sorted(p.name for p in start_states.glob("milestone_*.state")) == ["milestone_1.state"]
    assert (start_states / "replay.gif").stat().st_size > 0
    with VecGameBoy(
        EMUQUEST_ROM,
        num_envs=2,
        backend="serial",
        max_steps=3,
        initial_state=start_states / "after_intro.state",
    ) as env:
        _, info = env.reset(seed=0)
        assert list(info["milestones"]) == [1, 1]
        assert env.ram([EmuQuest.MODE])[0, 0] == EmuQuest.MODE_OVERWORLD
        for _ in range(3):
            _, _, _, truncated, info = env.step([0, 0])
        # Every episode starts past the title and the intro: both at step 0.
        assert truncated.all()
        assert [(e["title_steps"], e["intro_steps"]) for e in info["episodes"]] == [(0, 0), (0, 0)]


def test_a_missing_presses_file_or_bad_line_is_one_error(tmp_path):
    with pytest.raises(SystemExit, match="--presses .*: no such file"):
        make_start_state.main(make_start_state.Args(presses=tmp_path / "none", out=tmp_path / "s"))
    (tmp_path / "bad.presses").write_text("start\njump x2\n")
    with pytest.raises(SystemExit, match="line 2: 'jump x2' is not an action"):
        make_start_state.main(make_start_state.Args(presses=tmp_path / "bad.presses", out=tmp_path / "s"))


@pytest.fixture(scope="module")
def users_game(tmp_path_factory):
    """EmuQuest's ROM copied elsewhere, as a user's cartridge, and a second valid cartridge: the same
    game under another title, with its header checksum fixed."""
    folder = tmp_path_factory.mktemp("roms")
    rom = folder / "my_game.gb"
    shutil.copy(EMUQUEST_ROM, rom)
    other = folder / "other_game.gb"
    other.write_bytes(with_title(EMUQUEST_ROM.read_bytes(), b"OTHERQUEST"))
    check_rom(other)
    return rom, other


@pytest.fixture(scope="module")
def trained_from_start(reward_path, users_game, start_states, tmp_path_factory):  # noqa: F811
    """A tiny PPO run on the user's ROM from the after-intro state."""
    run_dir = tmp_path_factory.mktemp("run")
    ppo.main(
        tiny_args(
            reward_path,
            run_dir,
            rom=str(users_game[0]),
            initial_state=str(start_states / "after_intro.state"),
            iterations=2,
            save_every=1,
        )
    )
    return run_dir


def test_the_policy_records_its_rom_start_state_and_game(trained_from_start, users_game, start_states):
    ckpt = load_checkpoint(trained_from_start / "policy_final.pkl", "policy")
    config = ckpt["config"]
    assert config["rom"]["sha1"] == RomIdentity.of(EMUQUEST_ROM.read_bytes()).sha1
    assert config["rom"]["title"] == "EMUQUEST" and config["game"]["game"] == "emuquest"
    # Stored paths are relative to the checkpoint's folder.
    for name, path in (("rom", users_game[0]), ("initial_state", start_states / "after_intro.state")):
        assert (trained_from_start / config["args"][name]).resolve() == path.resolve()
    assert (trained_from_start / config["rom"]["path"]).resolve() == users_game[0].resolve()
    # The start state seeded the curriculum pool, before any new progress high.
    pool = ckpt["train_state"]["runner"]["pool"]
    assert bytes(pool["states"][0]) == (start_states / "after_intro.state").read_bytes()


def test_evaluation_runs_on_the_policys_rom_and_start_from_anywhere(
    trained_from_start, tmp_path, monkeypatch, capsys
):
    """No --rom and no --initial-state, from another working directory: the policy's own ROM, start state
    and reward model are found through the paths stored relative to the checkpoint."""
    monkeypatch.chdir(tmp_path)
    out = evaluate_policy.main(
        evaluate_policy.Args(
            policy=str(trained_from_start / "policy_final.pkl"), steps=4, episodes=2, num_workers=0
        )
    )
    [row] = out["rows"]
    assert row["intro_done_rate"] == 1.0 and row["title_steps_median"] == 0 and row["intro_steps_median"] == 0
    assert row["return_mean"] is not None  # the reward model was found from here
    assert out["game"]["title"] == "EMUQUEST"
    printed = capsys.readouterr().out
    assert "game: emuquest, cartridge EMUQUEST sha1 " in printed and "after_intro.state" in printed
    # From power-on when asked: the title is then still ahead.
    out = evaluate_policy.main(
        evaluate_policy.Args(
            policy=str(trained_from_start / "policy_final.pkl"),
            steps=2,
            episodes=2,
            num_workers=0,
            initial_state="power-on",
        )
    )
    assert out["rows"][0]["intro_done_rate"] == 0.0


def test_another_cartridge_is_refused_in_one_line(trained_from_start, users_game, tmp_path):
    policy = str(trained_from_start / "policy_final.pkl")
    refused = (
        r"--rom .*other_game.gb is OTHERQUEST \(sha1 .*\), but .* was trained on EMUQUEST \(sha1 .*\): "
        r"pass that cartridge, or --allow-other-rom"
    )
    with pytest.raises(SystemExit, match=refused):
        evaluate_policy.main(
            evaluate_policy.Args(policy=policy, rom=str(users_game[1]), num_workers=0, out_dir=str(tmp_path))
        )
    out = evaluate_policy.main(
        evaluate_policy.Args(
            policy=policy,
            rom=str(users_game[1]),
            allow_other_rom=True,
            steps=2,
            episodes=1,
            num_workers=0,
            out_dir=str(tmp_path),
        )
    )
    other = RomIdentity.of(users_game[1].read_bytes()).to_dict()
    assert out["game"] == {"game": "screen_only", **other, "screen_only": True}
    with pytest.raises(SystemExit, match=r"--rom .*other_game.gb is OTHERQUEST"):
        ppo.main(ppo.Args(resume=str(trained_from_start / "policy_1.pkl"), rom=str(users_game[1])))


def test_resume_without_rom_continues_on_the_recorded_rom(trained_from_start, users_game):
    records = ppo.main(ppo.Args(resume=str(trained_from_start / "policy_1.pkl"), iterations=2))
    assert [r["iteration"] for r in records] == [2] and records[0]["game"]["title"] == "EMUQUEST"
    resumed = load_checkpoint(trained_from_start / "policy_final.pkl", "policy")["config"]["args"]
    assert (trained_from_start / resumed["rom"]).resolve() == users_game[0].resolve()


def test_a_missing_recorded_rom_is_named(users_game, tmp_path):
    """The ROM a checkpoint recorded is gone: one line saying which cartridge to pass. (EmuQuest itself
    is found in the clone, wherever the checkpoint was written.)"""
    rom = tmp_path / "gone.gb"
    shutil.copy(users_game[1], rom)
    record = rom_record(rom, tmp_path / "ckpt")
    rom.unlink()
    with pytest.raises(
        SystemExit, match=r"trained on OTHERQUEST \(sha1 .*\) at .*gone.gb, which is not there"
    ):
        bound_rom(None, record, tmp_path / "ckpt" / "policy.pkl", allow_other=False)
    users_copy = tmp_path / "copy.gb"
    shutil.copy(users_game[0], users_copy)
    emuquest = rom_record(users_copy, tmp_path / "ckpt")
    users_copy.unlink()
    assert bound_rom(None, emuquest, tmp_path / "ckpt" / "policy.pkl", allow_other=False) == EMUQUEST_ROM
