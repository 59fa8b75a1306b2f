"""Smoke run of bench/env_throughput.py as a user runs it: tiny sizes, real processes."""

import subprocess
import sys
from pathlib import Path

from data import make_start_state
from envs.games import EMUQUEST_ROM

REPO = Path(__file__).resolve().parents[1]


def test_env_throughput_bench_writes_its_table(tmp_path: Path):
    """From a start state past EmuQuest's intro, as a Pokémon Red user would measure the overworld."""
    state = tmp_path / "after_intro.state"
    make_start_state.main(make_start_state.Args(presses=EMUQUEST_ROM.parent / "intro.presses", out=state))
    output = tmp_path / "env_throughput.md"
    command = [sys.executable, "bench/env_throughput.py", "--steps", "3", "--warmup-steps", "1"]
    command += ["--repeats", "1", "--worker-counts", "1", "--env-counts", "2", "--output", str(output)]
    result = subprocess.run(
        [*command, "--initial-state", str(state)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    table = output.read_text()
    assert "| 2 | raw PyBoy |" in table and "| 2 | VecGameBoy | 1 workers |" in table and "x raw" in table
    assert f"emuquest.gb from {state}," in table and table in result.stdout
    assert "game: emuquest, cartridge EMUQUEST" in result.stdout


def test_env_throughput_bench_refuses_a_missing_rom(tmp_path: Path):
    command = [sys.executable, "bench/env_throughput.py", "--rom", str(tmp_path / "nope.gb")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (
        result.returncode != 0 and "nope.gb not found" in result.stderr and "Traceback" not in result.stderr
    )
