"""The main job at --quick sizes, and bench/agent.py on its checkpoints: every phase wired together."""

import json
import sys
from pathlib import Path

import pytest

import pipeline
from models.checkpoint import load_checkpoint

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
    assert summary == result["report"] and summary["ppo_env_steps"] == 4 * 8 * 32
    keys = ("minutes_total", "ppo_sps", "env_only_sps", "trained_milestones_mean", "random_milestones_mean",
            "trained_finished_rate", "title_escape_rate")  # fmt: skip
    for key in keys:
        assert isinstance(summary[key], float), key
    assert summary["ppo_sps"] > 0 and summary["env_only_sps"] > 0


def test_agent_bench_trains_and_evaluates_like_the_main_job(quick_run, tmp_path):
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
        )
    )
    assert output.read_text() == table
    [row] = [line for line in table.splitlines() if line.startswith("| 3 |")]
    assert len(row.split("|")) == 12  # seed and the ten measures
    assert (tmp_path / "runs" / "seed_3" / "eval" / "trained_agent.gif").is_file()
    # --reward-scale reaches PPO, and the table says which scale it ran with.
    policy = load_checkpoint(tmp_path / "runs" / "seed_3" / "ppo" / "policy_final.pkl", "policy")
    assert policy["config"]["args"]["reward_scale"] == 0.5 and "reward scale 0.5;" in table


def test_agent_bench_refuses_missing_checkpoints(tmp_path):
    with pytest.raises(
        SystemExit, match="pretrained_encoder.pkl not found; run pipeline.py without --checkpoints"
    ):
        agent.main(agent.Args(checkpoints=tmp_path, quick=True, out_dir=tmp_path / "runs"))
