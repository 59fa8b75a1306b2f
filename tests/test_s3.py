"""The phases against a real S3-compatible server: moto's standalone server over HTTP on localhost,
reached through s3fs with the standard AWS variables. A sharded dataset goes up with data/sync.py, Phase 1
reads it from the bucket and writes its outputs there, its checkpoint loads back from the bucket, PPO and
the evaluation run with every file in the bucket, and a process killed in the middle of a checkpoint
upload leaves the previous checkpoint whole."""

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the phase scripts live at the repo root

from test_ppo import reward_path, tiny_args  # noqa: E402, F401  (reward_path is a fixture)

import evaluate_policy  # noqa: E402
import pretrain_visual  # noqa: E402
import train_with_cnn_reward as ppo  # noqa: E402
from data import storage, sync  # noqa: E402
from data.shards import write_shards  # noqa: E402
from models.checkpoint import load_checkpoint  # noqa: E402
from tests.synthetic_frames import write_synthetic_runs  # noqa: E402
from training.data import load_frames  # noqa: E402
from training.paths import find_checkpoint  # noqa: E402

TINY = dict(size="tiny", batch_size=16, seed=0, eval_every=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto server on localhost and the AWS variables that point s3fs at it; yields the environment."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "EMURL_CACHE": str(tmp_path_factory.mktemp("cache")),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        fs, _ = storage.filesystem("s3://emurl-test")
        fs.mkdir("emurl-test")
        yield env
    finally:
        server.kill()
        server.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3data")
    frames = write_synthetic_runs(root / "frames", num_runs=2, frames_per_run=40)
    write_shards(frames, str(root / "shards"), shard_size=16, show_progress=False)
    return root / "shards"


def test_phase1_reads_and_writes_a_bucket(s3, shards_dir, tmp_path):
    up = sync.main(sync.Args(str(shards_dir), "s3://emurl-test/speedruns"))
    assert len(up.copied) == 6 and not up.skipped  # index.npz and 5 shards
    again = sync.main(sync.Args(str(shards_dir), "s3://emurl-test/speedruns"))
    assert not again.copied and len(again.skipped) == 6

    remote = load_frames("s3://emurl-test/speedruns")
    local = load_frames(shards_dir)
    np.testing.assert_array_equal(remote.frames[np.arange(0, 80, 3)], local.frames[np.arange(0, 80, 3)])

    out = "s3://emurl-test/run"
    summary = pretrain_visual.main(
        pretrain_visual.Args(stage="1a", data="s3://emurl-test/speedruns", epochs=1, out_dir=out, **TINY)
    )
    fs, _ = storage.filesystem(out)
    names = {Path(name).name for name in fs.ls("emurl-test/run")}
    assert {"pretrained_tokenizer.pkl", "pretrained_encoder.pkl", "metrics.jsonl", "recon_grid.png"} <= names
    assert not [name for name in names if ".tmp" in name]
    ckpt = load_checkpoint(find_checkpoint(f"{out}/pretrained_tokenizer.pkl", "--tokenizer"), "tokenizer")
    assert ckpt["train_state"]["epoch"] == 1 and summary["1a"]["epoch"] == 1

    # --resume pulls the run back from the bucket and continues it there.
    resumed = pretrain_visual.main(
        pretrain_visual.Args(
            stage="all", data="s3://emurl-test/speedruns", epochs=2, out_dir=out, resume=True, **TINY
        )
    )
    assert resumed["1a"]["epoch"] == 2 and resumed["1b"]["epoch"] == 2
    assert "pretrained_dynamics.pkl" in {Path(name).name for name in fs.ls("emurl-test/run")}

    down = tmp_path / "down"
    sync.main(sync.Args("s3://emurl-test/speedruns", str(down)))
    np.testing.assert_array_equal(np.asarray(load_frames(down).frames), np.asarray(local.frames))


def test_kill_during_a_checkpoint_upload_keeps_the_previous_one(s3, tmp_path):
    """A child saves checkpoint step 1 to the bucket, then is SIGKILLed while uploading step 2: after the
    temporary object is written, before it is copied onto the checkpoint's key."""
    child = textwrap.dedent(
        """
        import os, signal, sys
        import numpy as np
        import data.storage as storage
        from models.checkpoint import save_checkpoint
        from training.out_dir import OutDir

        with OutDir(sys.argv[1]) as out:
            path = out.local / "model.pkl"
            save_checkpoint(path, kind="tokenizer", config={}, params={"w": np.ones(4)}, step=1)
            out.push()
            fs, _ = storage.filesystem(sys.argv[1])
            fs.copy = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
            save_checkpoint(path, kind="tokenizer", config={}, params={"w": np.zeros(4)}, step=2)
            out.push()
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", child, "s3://emurl-test/killed"],
        cwd=REPO,
        env={**os.environ, **s3},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -9, run.stderr
    fs, _ = storage.filesystem("s3://emurl-test/killed")
    assert any(".tmp-" in name for name in fs.ls("emurl-test/killed"))  # step 2 got that far
    saved = load_checkpoint(find_checkpoint("s3://emurl-test/killed/model.pkl", "--tokenizer"), "tokenizer")
    assert saved["step"] == 1
    np.testing.assert_array_equal(np.asarray(saved["params"]["w"], np.float32), np.ones(4))


def test_bad_storage_is_one_line_before_training(s3, shards_dir, monkeypatch, capsys):
    good = dict(data="s3://emurl-test/speedruns", epochs=1, **TINY)
    sync.main(sync.Args(str(shards_dir), "s3://emurl-test/speedruns"))
    with pytest.raises(SystemExit, match=r"^error: --data: s3://no-such-bucket/x holds no sharded dataset"):
        pretrain_visual.main(pretrain_visual.Args(**{**good, "data": "s3://no-such-bucket/x"}))
    with pytest.raises(SystemExit, match=r"^error: --out-dir s3://no-such-bucket/run: cannot write there"):
        pretrain_visual.main(pretrain_visual.Args(**{**good, "out_dir": "s3://no-such-bucket/run"}))
    with pytest.raises(SystemExit, match=r"^error: --tokenizer s3://emurl-test/none.pkl: cannot read it"):
        pretrain_visual.main(
            pretrain_visual.Args(**{**good, "stage": "1b", "tokenizer": "s3://emurl-test/none.pkl"})
        )
    with pytest.raises(SystemExit, match=r"^error: .*manifest.json"):
        sync.main(sync.Args("s3://emurl-test/nothing-here", "s3://emurl-test/copy"))
    # Without credentials (a fresh filesystem: s3fs caches one per set of options).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    import s3fs

    monkeypatch.setattr(s3fs.S3FileSystem, "cachable", False)
    with pytest.raises(SystemExit, match=r"^error: --data s3://emurl-test/speedruns: NoCredentialsError"):
        pretrain_visual.main(pretrain_visual.Args(**good))
    assert "Traceback" not in capsys.readouterr().err


def test_ppo_and_evaluation_keep_everything_in_a_bucket(s3, reward_path):  # noqa: F811
    reward = "s3://emurl-test/reward/reward.pkl"
    storage.upload(reward_path, reward)
    out = "s3://emurl-test/ppo"
    first = ppo.main(tiny_args(reward, out, iterations=2, save_every=1))
    fs, _ = storage.filesystem(out)
    names = {Path(name).name for name in fs.ls("emurl-test/ppo")}
    assert {"policy_1.pkl", "policy_2.pkl", "policy_final.pkl", "metrics.jsonl"} <= names
    policy = load_checkpoint(find_checkpoint(f"{out}/policy_2.pkl", "--resume"), "policy")
    assert policy["config"]["args"]["reward_model"] == reward  # a URL is stored as it is

    resumed = ppo.main(tiny_args(reward, out, iterations=3, save_every=1, resume=f"{out}/policy_2.pkl"))
    assert [r["iteration"] for r in first] == [1, 2] and [r["iteration"] for r in resumed] == [3]
    assert len(fs.cat_file("emurl-test/ppo/metrics.jsonl").decode().splitlines()) == 3

    result = evaluate_policy.main(
        evaluate_policy.Args(
            policy=f"{out}/policy_final.pkl",
            steps=10,
            episodes=2,
            num_workers=0,
            gif="s3://emurl-test/eval/agent.gif",
            out_dir="s3://emurl-test/eval",
        )
    )
    assert result["rows"][0]["return_mean"] is not None  # the reward model came from the bucket
    assert result["plot"] == "s3://emurl-test/eval/training_milestones.png"  # from the bucket's metrics
    names = {Path(name).name for name in fs.ls("emurl-test/eval")}
    assert {"eval_table.md", "eval.json", "training_milestones.png", "agent.gif"} <= names
