"""Two local processes training as one through jax.distributed (gloo on the CPU, one device each): Phase 1
matches one process on the same global batch, only process 0 writes, and a killed process stops the other
with an error instead of a hang."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic_frames import write_synthetic_runs
from tests.test_ppo import reward_path  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[1]
PHASE1 = ["--stage", "1a", "--size", "tiny", "--batch-size", "16", "--restart-every", "0", "--seed", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: str, flags: list[str], processes: int, env: dict) -> list[subprocess.Popen]:
    port = free_port()
    together = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(processes)]
    return [
        subprocess.Popen(
            [sys.executable, script, *flags, *(together + ["--process-id", str(i)] if processes > 1 else [])],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]


def finish(processes: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    errors = []
    for process in processes:
        _, stderr = process.communicate(timeout=timeout)
        assert process.returncode == 0, stderr[-3000:]
        errors.append(stderr)
    return errors


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    frames = write_synthetic_runs(root / "frames", num_runs=3, frames_per_run=40)
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "",
        "EMURL_CACHE": str(root / "cache"),
        "FRAMES": str(frames),
    }


def records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_phase1_on_two_processes_matches_one_and_only_process_0_writes(env, tmp_path):
    flags = [*PHASE1, "--data", env["FRAMES"], "--epochs", "2"]
    one = launch("pretrain_visual.py", [*flags, "--out-dir", str(tmp_path / "one")], 1, env)
    finish(one)
    two = launch("pretrain_visual.py", [*flags, "--out-dir", str(tmp_path / "two")], 2, env)
    finish(two)
    single, together = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["epoch"] for r in together] == [1, 2]  # one writer: no record twice
    for name in ("train_loss", "train_recon_mse", "eval_recon_mse"):
        np.testing.assert_allclose([r[name] for r in together], [r[name] for r in single], rtol=1e-3)
    assert [r["codes_used"] for r in together] == [r["codes_used"] for r in single]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    assert not list(Path(env["EMURL_CACHE"]).glob("out-dir-*"))  # process 1's private copy is gone

    # Both processes resume from process 0's checkpoint and continue the same run.
    more = launch(
        "pretrain_visual.py",
        [*PHASE1, "--data", env["FRAMES"], "--epochs", "3", "--resume", "--out-dir", str(tmp_path / "two")],
        2,
        env,
    )
    finish(more)
    assert [r["epoch"] for r in records(tmp_path / "two")] == [1, 2, 3]


def test_a_killed_process_stops_the_other_with_an_error(env, tmp_path):
    flags = [*PHASE1, "--data", env["FRAMES"], "--epochs", "1000", "--heartbeat-timeout", "5"]
    survivor, victim = launch("pretrain_visual.py", [*flags, "--out-dir", str(tmp_path)], 2, env)
    deadline = time.monotonic() + 180
    while not (tmp_path / "metrics.jsonl").is_file():  # both are training
        assert time.monotonic() < deadline and survivor.poll() is None, survivor.stderr.read()[-3000:]
        time.sleep(0.5)
    victim.kill()
    killed_at = time.monotonic()
    _, stderr = survivor.communicate(timeout=120)
    assert survivor.returncode != 0
    assert time.monotonic() - killed_at < 60
    assert "another task died" in stderr or "heartbeat" in stderr, stderr[-3000:]


def test_the_reward_on_two_processes_matches_one(env, tmp_path):
    flags = [
        "--data",
        env["FRAMES"],
        "--size",
        "tiny",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--min-gap",
        "4",
    ]
    flags += ["--pairs-per-epoch", "32", "--seed", "2"]
    finish(launch("train_reward.py", [*flags, "--out-dir", str(tmp_path / "one")], 1, env))
    finish(launch("train_reward.py", [*flags, "--out-dir", str(tmp_path / "two")], 2, env))
    single, together = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["epoch"] for r in together] == [1, 2]
    for name in ("train_loss", "train_pairwise_accuracy", "eval_pairwise_accuracy"):
        np.testing.assert_allclose(
            [r[name] for r in together], [r[name] for r in single], rtol=1e-3, atol=1e-6
        )


PPO_PROCESS = """
import sys
import jax
import numpy as np
from flax import nnx

import train_with_cnn_reward as ppo
from tests.test_ppo import tiny_args
from training.distributed import Distributed

port, pid, reward, out, dump = sys.argv[1:]
save_policy = ppo.save_policy


def save_and_dump(path, model, **kwargs):  # every process's params, which only process 0 saves
    save_policy(path, model=model, **kwargs)
    leaves = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    np.savez(f"{dump}/params_{pid}.npz", *leaves)


ppo.save_policy = save_and_dump
distributed = Distributed(f"127.0.0.1:{port}", 2, int(pid))
ppo.main(tiny_args(reward, out, iterations=2, save_every=2, distributed=distributed))
"""


def test_ppo_on_two_processes_ends_with_the_same_params_everywhere(env, tmp_path, reward_path):  # noqa: F811
    port = free_port()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                PPO_PROCESS,
                str(port),
                str(pid),
                str(reward_path),
                str(tmp_path / "run"),
                str(tmp_path),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    finish(processes)
    first, second = np.load(tmp_path / "params_0.npz"), np.load(tmp_path / "params_1.npz")
    assert len(first.files) > 4
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    logged = records(tmp_path / "run")
    assert [r["iteration"] for r in logged] == [1, 2]  # one writer
    assert logged[-1]["env_steps"] == 2 * 2 * 8 * 2  # iterations x processes x envs x steps
    assert logged[-1]["filter/segments"] >= 4  # the return filter saw both processes' envs


def test_flags_or_slurm_decide_how_the_processes_join(monkeypatch):
    from training import distributed

    calls = []
    monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(distributed.jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.jax.config, "update", lambda *a: None)
    for name in ("SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    distributed.initialize(distributed.Distributed())
    assert calls == []  # one process: nothing to join
    with pytest.raises(SystemExit, match="go together"):
        distributed.initialize(distributed.Distributed(num_processes=2))
    with pytest.raises(SystemExit, match="--process-id 2 is not in 0 .. 1"):
        distributed.initialize(distributed.Distributed("h:1", 2, 2))
    distributed.initialize(distributed.Distributed("h:1", 2, 1))
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "3")
    distributed.initialize(distributed.Distributed())  # under srun jax reads SLURM's variables itself
    assert calls == [("h:1", 2, 1), (None, None, None)]
