"""The main job at --quick sizes, and bench/agent.py on its checkpoints: every phase wired together."""

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

import pipeline
from data import make_start_state
from envs.games import EMUQUEST_ROM
from models.checkpoint import load_checkpoint
from models.reward import load_reward
from training import main_job

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import agent  # noqa: E402  (bench/agent.py)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pipeline")
    return out, pipeline.main(pipeline.Args(quick=True, out_dir=out))


def test_quick_pipeline_runs_every_phase_and_writes_its_report(quick_run):
    out, result = quick_run
    report = (out / "report.md").read_text()
    for phase in ("speedruns", "tokenizer", "dynamics", "reward", "PPO", "evaluation"):
        assert f"| {phase}" in report
    assert "| trained |" in report and "| random |" in report
    assert Path(result["evaluation"]["gif"]).is_file() and Path(result["evaluation"]["plot"]).is_file()
    assert result["history"][-1]["iteration"] == result["budget"]["ppo_iterations"]
    # report.json: the figures a program reads, measured in this run.
    summary = json.loads((out / "report.json").read_text())
    assert summary == result["report"]
    assert summary["ppo_env_steps"] == summary["ppo_env_steps_run"] == 4 * 8 * 32
    keys = ("minutes_total", "ppo_sps", "env_only_sps", "trained_milestones_mean", "random_milestones_mean",
            "trained_finished_rate", "title_escape_rate")  # fmt: skip
    for key in keys:
        assert isinstance(summary[key], float), key
    assert summary["ppo_sps"] > 0 and summary["env_only_sps"] > 0
    # The reward reads the episode's seen tokens through event features, and PPO scales it to match.
    reward = load_reward(out / "checkpoints" / "reward_vq.pkl")
    assert reward.cfg.seen_tokens and reward.cfg.events == main_job.QUICK.reward_events > 0
    assert result["ppo_args"]["reward_scale"] == main_job.EVENT_REWARD_SCALE
    # PPO's reward follows the run's own speedruns in order.
    assert result["ppo_args"]["route_frames"] == str(out / "speedruns" / "frames")


def test_agent_bench_trains_and_evaluates_like_the_main_job(quick_run, tmp_path, monkeypatch):
    out, _ = quick_run
    output = tmp_path / "agent.md"
    table = agent.main(
        agent.Args(
            checkpoints=out / "checkpoints",
            seeds=(3,),
            quick=True,
            out_dir=tmp_path / "runs",
            output=output,
            reward_scale=0.5,
            curriculum_cells=True,
            memory=4,
            curriculum_temperature=3.0,
            progress_baseline="last",
            route_scene_change=20,
            route_text_barrier=8,
        )
    )
    assert output.read_text() == table
    [row] = [line for line in table.splitlines() if line.startswith("| 3 |")]
    assert len(row.split("|")) == 12  # seed and the ten measures
    assert (tmp_path / "runs" / "seed_3" / "eval" / "trained_agent.gif").is_file()
    # The bench's PPO settings reach PPO, and the table says what it ran with.
    ran_with = load_checkpoint(tmp_path / "runs" / "seed_3" / "ppo" / "policy_final.pkl", "policy")["config"]
    assert (ran_with["args"]["reward_scale"], ran_with["args"]["curriculum_cells"]) == (0.5, True)
    assert ran_with["args"]["memory"] == ran_with["policy"]["memory"] == 4
    ran = ran_with["args"]
    assert (ran["curriculum_temperature"], ran["progress_baseline"]) == (3.0, "last")
    assert (ran["route_scene_change"], ran["route_text_barrier"]) == (20, 8)
    assert (
        "reward scale 0.5, curriculum cell archive (band 4), memory 4, progress baseline last, "
        f"route along {out / 'speedruns' / 'frames'} (window 30, tolerance 1, scene change 20, "
        "text barrier 8)" in table
    )
    # --resume-from continues the seed's run: the report counts all its env steps, and the wall SPS only
    # this run's (one iteration of 8 envs x 32 steps).
    more = agent.Args(
        checkpoints=out / "checkpoints", seeds=(3,), quick=True, out_dir=tmp_path / "more",
        output=tmp_path / "more.md", reward_scale=0.5, curriculum_cells=True, memory=4,
        curriculum_temperature=3.0, progress_baseline="last", route_scene_change=20, route_text_barrier=8,
        resume_from=tmp_path / "runs", ppo_iterations=5,
    )  # fmt: skip
    agent.main(more)
    resumed = json.loads((tmp_path / "more" / "seed_3" / "report.json").read_text())
    assert (resumed["ppo_env_steps"], resumed["ppo_env_steps_run"]) == (5 * 8 * 32, 8 * 32)
    assert agent.row(3, resumed, None, {}, {})["ppo_sps_wall"] == 8 * 32 / 60 / resumed["minutes"]["PPO"]
    assert agent.finished_run(dataclasses.replace(more, reuse=True), 3) is not None  # nothing trained again
    # --reuse reads the finished seed back instead of training it again, but only at the same settings.
    bench = agent.Args(
        checkpoints=out / "checkpoints", seeds=(3,), quick=True, out_dir=tmp_path / "runs",
        output=tmp_path / "again.md", reward_scale=0.5, curriculum_cells=True, memory=4, reuse=True,
        curriculum_temperature=3.0, progress_baseline="last", route_scene_change=20, route_text_barrier=8,
    )  # fmt: skip
    monkeypatch.setattr(agent.pipeline, "main", lambda _: pytest.fail("a finished seed was trained again"))
    assert agent.main(bench) == table
    # Several seeds end with their mean; a seed's row repeated has itself as the mean.
    seed_row = agent.finished_run(bench, 3)
    [mean] = [line for line in agent.markdown([seed_row, seed_row], bench).splitlines() if "mean" in line]
    assert mean.split("|")[4:6] == [f" **{c.strip()}** " for c in row.split("|")[4:6]]
    assert agent.finished_run(dataclasses.replace(bench, memory=8), 3) is None
    assert agent.finished_run(dataclasses.replace(bench, route=False), 3) is None
    assert agent.finished_run(dataclasses.replace(bench, route_scene_change=0), 3) is None
    assert agent.finished_run(dataclasses.replace(bench, route_text_barrier=0), 3) is None
    assert agent.finished_run(dataclasses.replace(bench, checkpoints=tmp_path), 3) is None
    # A report older than the policy is an earlier run's: the policy's own evaluation never finished.
    report = tmp_path / "runs" / "seed_3" / "report.json"
    os.utime(report, (0, 0))
    assert agent.finished_run(bench, 3) is None


def test_agent_bench_refuses_missing_checkpoints(tmp_path):
    with pytest.raises(
        SystemExit, match="pretrained_encoder.pkl not found; run pipeline.py without --checkpoints"
    ):
        agent.main(agent.Args(checkpoints=tmp_path, quick=True, out_dir=tmp_path / "runs"))


def test_checkpoints_without_their_speedrun_frames_need_route_frames_or_no_route(tmp_path):
    checkpoints = tmp_path / "elsewhere" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("pretrained_encoder.pkl", "pretrained_dynamics.pkl", "reward_vq.pkl"):
        (checkpoints / name).touch()  # only their presence is checked before the route's frames
    with pytest.raises(SystemExit, match="no speedrun frames at .*speedruns/frames for PPO's route"):
        pipeline.main(pipeline.Args(quick=True, out_dir=tmp_path / "run", checkpoints=checkpoints))


@pytest.mark.parametrize(
    "flag, bad",
    [("route_scene_change", -1), ("route_text_barrier", -1), ("novelty_bonus", -0.1)],
    ids=["scene-change", "text-barrier", "novelty"],
)
def test_a_negative_reward_setting_is_refused_before_any_phase(tmp_path, flag, bad):
    with pytest.raises(SystemExit, match=f"--{flag.replace('_', '-')} must be >= 0"):
        pipeline.main(pipeline.Args(quick=True, out_dir=tmp_path / "run", **{flag: bad}))
    assert not (tmp_path / "run").exists()


def test_the_backward_curriculum_reaches_ppo_and_needs_the_route(quick_run, tmp_path):
    out, result = quick_run
    bench = agent.Args(checkpoints=out / "checkpoints", quick=True, curriculum_backward=True)
    args = agent.pipeline_args(bench, seed=0)
    ppo = pipeline.ppo_args(main_job.QUICK, out / "checkpoints", tmp_path / "ppo", args)
    assert ppo.curriculum_backward and ppo.route_frames == str(out / "speedruns" / "frames")
    seed_row = agent.row(0, result["report"], None, dataclasses.asdict(ppo), result["budget"])
    assert "curriculum new highs walked back from the runs' end" in agent.markdown([seed_row], bench)
    for refused in (dict(route=False), dict(curriculum_cells=True)):
        with pytest.raises(SystemExit, match="--curriculum-backward needs --route"):
            pipeline.main(
                pipeline.Args(quick=True, out_dir=tmp_path / "run", curriculum_backward=True, **refused)
            )
        assert not (tmp_path / "run").exists()


def test_ppo_set_reaches_ppo_over_the_main_jobs_settings_and_the_bench_header(quick_run, tmp_path):
    out, result = quick_run
    settings = ("ent-coef=0.01", "gamma=0.995", "curriculum_cells=true", "--route-window=45")
    bench = agent.Args(checkpoints=out / "checkpoints", quick=True, memory=8, ppo_set=settings)
    args = agent.pipeline_args(bench, seed=0)
    ppo = pipeline.ppo_args(main_job.QUICK, out / "checkpoints", tmp_path / "ppo", args)
    plain = pipeline.ppo_args(
        main_job.QUICK, out / "checkpoints", tmp_path / "ppo", dataclasses.replace(args, ppo_set=())
    )
    before = dataclasses.asdict(plain)
    changed = {k: v for k, v in dataclasses.asdict(ppo).items() if v != before[k]}
    assert changed == dict(ent_coef=0.01, gamma=0.995, curriculum_cells=True, route_window=45)
    assert (ppo.memory, ppo.learning_rate) == (8, main_job.PPO_OVERRIDES["learning_rate"])  # the rest stays
    seed_row = agent.row(0, result["report"], None, dataclasses.asdict(ppo), result["budget"])
    header = agent.markdown([seed_row], bench).splitlines()[0]
    assert "ent-coef=0.01, gamma=0.995, curriculum_cells=true, --route-window=45; evaluation" in header


@pytest.mark.parametrize(
    "setting, message",
    [
        ("ent-coef", "write NAME=VALUE"),
        ("seed=3", "pipeline.py sets --seed itself"),
        ("curriculum-cells=yes", "--curriculum-cells is a switch, true or false"),
        ("ent-cof=0.01", None),  # tyro: unrecognized option
        ("gamma=high", None),  # tyro: not a float
    ],
)
def test_a_bad_ppo_set_is_refused_before_any_phase(tmp_path, setting, message, capsys):
    with pytest.raises(SystemExit) as refused:
        pipeline.main(pipeline.Args(quick=True, out_dir=tmp_path / "run", ppo_set=(setting,)))
    if message is not None:
        assert message in str(refused.value)
    else:
        assert refused.value.code == 2 and setting.split("=")[0] in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pipeline_from_a_users_rom_and_videos(quick_run, tmp_path):
    """`pipeline.py --rom R --videos DIR --initial-state S` as a user with their own game runs it: EmuQuest's
    ROM copied elsewhere and the quick run's speedrun mp4s stand in for the user's cartridge and footage."""
    out, _ = quick_run
    rom = tmp_path / "users_game.gb"
    shutil.copy(EMUQUEST_ROM, rom)
    state = tmp_path / "after_intro.state"
    make_start_state.main(
        make_start_state.Args(presses=EMUQUEST_ROM.parent / "intro.presses", out=state, rom=rom)
    )
    result = pipeline.main(
        pipeline.Args(
            quick=True,
            out_dir=tmp_path / "run",
            rom=rom,
            videos=out / "speedruns" / "videos",
            initial_state=state,
        )
    )
    runs = sorted(p.name for p in (tmp_path / "run" / "videos" / "frames").iterdir())
    assert runs == ["run_00", "run_01", "run_02"]  # one folder of frames per video
    assert "frames from videos" in result["durations"] and "speedruns" not in result["durations"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| frames from videos | 3 videos at 15 fps |" in report and "cartridge EMUQUEST" in report
    summary = result["report"]
    assert summary["game"]["game"] == "emuquest" and summary["intro_done_rate"] == 1.0
    # Videos have no random-play branches, so the reward reads one frame at PPO's plain scale.
    assert not load_reward(tmp_path / "run" / "checkpoints" / "reward_vq.pkl").cfg.seen_tokens
    assert result["ppo_args"]["reward_scale"] == 1.0
    assert result["ppo_args"]["route_frames"] == str(tmp_path / "run" / "videos" / "frames")
    policy = load_checkpoint(tmp_path / "run" / "ppo" / "policy_final.pkl", "policy")["config"]
    assert (tmp_path / "run" / "ppo" / policy["rom"]["path"]).resolve() == rom.resolve()


def test_pipeline_refuses_a_rom_without_videos(tmp_path):
    with pytest.raises(SystemExit, match="--rom needs --videos"):
        pipeline.main(pipeline.Args(quick=True, out_dir=tmp_path, rom=EMUQUEST_ROM))
    with pytest.raises(SystemExit, match="--videos .*: no such file or folder"):
        pipeline.main(pipeline.Args(quick=True, out_dir=tmp_path, videos=tmp_path / "none"))
