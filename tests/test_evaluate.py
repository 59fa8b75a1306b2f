"""evaluate_policy.py on a tiny policy trained for two iterations on the embedded game."""

import json
import pickle

import pytest
from PIL import Image
from test_ppo import reward_path, tiny_args  # noqa: F401  (reward_path is a fixture)

import evaluate_policy
import train_with_cnn_reward as ppo
from bench import door_scores, saved_states
from training.policy_io import load_policy
from training.progress import ProgressReward


@pytest.fixture(scope="module")
def trained_run(reward_path, tmp_path_factory):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("run")
    ppo.main(tiny_args(reward_path, run_dir, iterations=2, save_every=2))
    return run_dir


def test_evaluate_writes_table_gif_and_training_plot(trained_run, tmp_path):
    out = evaluate_policy.main(
        evaluate_policy.Args(
            policy=str(trained_run / "policy_final.pkl"),
            steps=10,
            episodes=2,
            num_workers=0,
            compare_random=True,
            gif=str(tmp_path / "agent.gif"),
            out_dir=str(tmp_path / "eval"),
        )
    )
    assert [row["agent"] for row in out["rows"]] == ["trained", "random"]
    for row in out["rows"]:
        assert row["episodes"] == 2 and 0.0 <= row["title_escape_rate"] <= 1.0
        assert row["return_mean"] is not None  # the policy's reward model was found and used
        assert set(row["facts_mean"]) == {"battles"}  # EmuQuest's episode facts, in the table too
    assert "| game facts (mean) |" in out["table"] and " battles " in out["table"]
    assert "| trained | 2 |" in (tmp_path / "eval" / "eval_table.md").read_text()
    written = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert written == {"game": out["game"], "rows": out["rows"]} and out["game"]["title"] == "EMUQUEST"

    with Image.open(out["gif"]) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 10  # one frame per step of the first episode
        assert gif.size == (320, 288 + 16)  # 2x frame plus the caption bar
        gif.seek(gif.n_frames - 1)
        assert gif.convert("RGB").getextrema() != ((0, 0), (0, 0), (0, 0))  # not a blank frame
    with Image.open(out["plot"]) as plot:
        assert plot.format == "PNG" and plot.size[0] > 100


def test_the_return_column_is_the_trained_runs_reward(trained_run, tmp_path, monkeypatch):
    """Interval, penalty, scale and progress baseline come from the policy's training args."""
    real_load, built = evaluate_policy.load_policy, []

    def load_as_if_trained_with_best(path):
        model, cfg, ckpt = real_load(path)
        ckpt["config"]["args"].update(progress_baseline="best", reward_scale=2.0)
        return model, cfg, ckpt

    def recording_progress(*args, **kwargs):
        progress = ProgressReward(*args, **kwargs)
        built.append(progress)
        return progress

    monkeypatch.setattr(evaluate_policy, "load_policy", load_as_if_trained_with_best)
    monkeypatch.setattr(evaluate_policy, "ProgressReward", recording_progress)
    out = evaluate_policy.main(
        evaluate_policy.Args(
            policy=str(trained_run / "policy_final.pkl"),
            steps=6,
            episodes=2,
            num_workers=0,
            out_dir=str(tmp_path),
        )
    )
    trained = load_policy(trained_run / "policy_final.pkl")[2]["config"]["args"]
    assert len(built) == 1 and built[0].from_best and built[0].scale == 2.0
    assert (built[0].interval, built[0].time_penalty) == (trained["reward_interval"], trained["time_penalty"])
    # With the best-so-far baseline no step earns less than the time penalty.
    assert out["rows"][0]["return_mean"] >= -6 * trained["time_penalty"] - 1e-6


def test_random_baseline_needs_no_policy(tmp_path):
    out = evaluate_policy.main(
        evaluate_policy.Args(
            policy=None, random=True, steps=5, episodes=2, num_workers=0, out_dir=str(tmp_path)
        )
    )
    assert [row["agent"] for row in out["rows"]] == ["random"]
    assert out["rows"][0]["return_mean"] is None and out["gif"] is None and out["plot"] is None


def test_a_wrong_kind_policy_is_refused(reward_path, tmp_path):  # noqa: F811
    with pytest.raises(SystemExit, match=r"--policy: .*'reward' checkpoint, expected 'policy'"):
        evaluate_policy.main(evaluate_policy.Args(policy=str(reward_path), out_dir=str(tmp_path)))


def test_the_table_reports_the_steps_to_leave_the_title(trained_run, tmp_path):
    """Leaving the title is the seed's problem; the median step it happens at tells a trained agent
    from one that presses START by chance."""
    out = evaluate_policy.main(
        evaluate_policy.Args(
            policy=str(trained_run / "policy_final.pkl"),
            steps=40,
            episodes=2,
            num_workers=0,
            compare_random=True,
            out_dir=str(tmp_path),
        )
    )
    for row in out["rows"]:
        assert row["title_steps_median"] is None or 0 < row["title_steps_median"] <= 40
        assert (
            row["intro_steps_median"] is None or row["title_steps_median"] < row["intro_steps_median"] <= 40
        )
    assert "left title (median step) | intro done (median step)" in out["table"]


def test_bad_output_places_are_refused_before_any_episode(trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(
        evaluate_policy, "play", lambda *a, **k: pytest.fail("played before checking outputs")
    )
    policy = str(trained_run / "policy_final.pkl")
    with pytest.raises(SystemExit, match=r"--out-dir /proc/nope: cannot write there"):
        evaluate_policy.main(evaluate_policy.Args(policy=policy, out_dir="/proc/nope", num_workers=0))
    with pytest.raises(SystemExit, match=r"--gif /proc/nope: cannot write there"):
        evaluate_policy.main(
            evaluate_policy.Args(policy=policy, gif="/proc/nope/a.gif", out_dir=str(tmp_path))
        )
    with pytest.raises(SystemExit, match=r"--metrics .*missing.jsonl: no such file"):
        evaluate_policy.main(
            evaluate_policy.Args(
                policy=policy, metrics=str(tmp_path / "missing.jsonl"), out_dir=str(tmp_path)
            )
        )


def test_the_door_bench_plays_the_trained_policy_and_scores_it_with_its_reward(
    trained_run,
    reward_path,  # noqa: F811
    tmp_path,
):
    """bench/door_scores.py end to end on a tiny run: the policy's own reward (found through its
    checkpoint) scores its play, and the table is written."""
    table = door_scores.main(
        door_scores.Args(
            policy=trained_run / "policy_final.pkl",
            episodes=2,
            steps=24,
            num_workers=0,
            output=tmp_path / "d.md",
        )
    )
    assert (tmp_path / "d.md").read_text() == table
    assert "| room entry |" in table and f"reward `{reward_path}`" in table


def test_the_saved_states_bench_plays_every_state_of_the_trained_runs_pool(trained_run, tmp_path):
    """bench/saved_states.py end to end on a tiny run: one row per curriculum state, shares in [0, 1]."""
    table = saved_states.main(
        saved_states.Args(
            policy=trained_run / "policy_final.pkl",
            episodes=2,
            steps=3,
            power_on_steps=3,
            states_per_batch=2,
            num_workers=0,
            output=tmp_path / "s.md",
        )
    )
    _, _, ckpt = load_policy(trained_run / "policy_final.pkl")
    pool = ckpt["train_state"]["runner"]["pool"]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert (tmp_path / "s.md").read_text() == table
    assert [int(row.split("|")[1]) for row in rows] == list(range(len(pool["states"])))
    for row in rows:
        assert [float(row.split("|")[2])] == pytest.approx([pool["scores"][int(row.split("|")[1])]], abs=0.05)
        for share in row.split("|")[5].split("/") + row.split("|")[6].split("/"):
            assert share.strip() == "–" or 0 <= int(share.strip().rstrip("%")) <= 100

    without_pool = tmp_path / "policy_without_pool.pkl"
    without_pool.write_bytes(pickle.dumps({k: v for k, v in ckpt.items() if k != "train_state"}))
    with pytest.raises(SystemExit, match="holds no curriculum pool"):
        saved_states.main(saved_states.Args(policy=without_pool, num_workers=0, output=tmp_path / "t.md"))
    assert not (tmp_path / "t.md").exists()
