"""The pipeline benchmark at tiny sizes, so that it cannot rot: it starts its own broker,
database and services, runs every phase and prints its table. No figure is asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    "throughput (per s)",
    "CPU-ms per need / event",
    "time to assignment, open loop",
    "burst of 10 needs",
    "drain: all fulfilled (s)",
    "lost (not fulfilled in matching)",
    "dead-lettered (dlq.*, relief.intake.dlq)",
    "CPU-ms per need in the burst, by process",
    "matching",
    "database",
    "broker",
    "database requests per need in the burst",
    "targets (issue 12",
]


@pytest.mark.timeout(240)
def test_the_pipeline_benchmark_runs_at_tiny_sizes_and_prints_its_table():
    done = subprocess.run([sys.executable, "bench/pipeline.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for row in ROWS:
        assert row in out, f"{row!r} missing from:\n{out}"
    rates = [line.split()[0] for line in out.splitlines()
             if line.strip() and line.split()[0] in ("10", "25", "50", "100")]
    assert rates == ["10", "25", "50", "100"], out
    assert "a/b" in out
