"""The surge drill (``bench/surge.py``) at a small size against the whole system: it passes
when every need is fulfilled and the services' figures agree, and says why it fails when
they do not (or when it cannot run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import System

ROOT = Path(__file__).resolve().parents[2]
NEEDS = 30


def drill(system: System, tmp_path: Path, *args: str,
          token: str = System.TOKEN) -> subprocess.CompletedProcess:
    """The drill pointed at the test system; ``--root`` at an empty directory, so that no
    ``.local/`` of a ``make run`` in this clone lends it a token or a publisher."""
    space = system.space
    return subprocess.run(
        [sys.executable, "bench/surge.py", "--api", system.url, "--token", token,
         "--amqp", space.amqp_uri, "--vhost", space.vhost,
         "--management", space.management_uri, "--root", str(tmp_path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=280)


def line_of(out: str, words: str) -> str:
    return next((line for line in out.splitlines() if words in line), "")


@pytest.mark.timeout(300)
def test_a_small_surge_is_fulfilled_and_every_figure_agrees(system, tmp_path):
    # the answers' 1 s limit is the drill's point on an operator's machine; here the
    # machine is shared with the rest of the suite, so only a hang may fail it
    done = drill(system, tmp_path, "--needs", str(NEEDS), "--timeout", "120",
                 "--max-answer", "15")
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-3000:]
    assert "result: PASS" in out
    assert f"{NEEDS} of {NEEDS}" in line_of(out, "needs of the run fulfilled"), out
    quantity = f"{NEEDS * 10} piece"
    for figure in ("quantity assigned to them", "of it from the run's lots",
                   "stock taken from the run's", "allocated from them (ledger)",
                   "received into the run's lots (ledger)"):
        row = line_of(out, figure)
        assert row.count(quantity) == 2 and row.rstrip().endswith("yes"), row
    for reads in ("relief-ops status", "GET /api/dashboard"):
        cells = line_of(out, reads).split()
        assert cells, out
        assert int(cells[len(reads.split())]) >= 1, out  # at least one timed answer
    assert "all fulfilled (s; target 120)" in out and "load 1m" in out


def test_a_wrong_token_is_said_and_nothing_is_published(system, tmp_path):
    done = drill(system, tmp_path, "--needs", "5", token="not-the-token")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refused the token (401" in done.stderr and "--token" in done.stderr
    assert "result:" not in done.stdout


@pytest.mark.timeout(200)
def test_needs_not_fulfilled_in_time_fail_the_drill_naming_what_failed(system, tmp_path):
    done = drill(system, tmp_path, "--needs", "5", "--timeout", "0.001", "--settle", "60",
                 "--max-answer", "15")
    out = done.stdout
    assert done.returncode == 1, out[-4000:] + done.stderr[-3000:]
    assert "drain of 5 needs: NOT within target" in out
    failures = out.split("result: FAIL", 1)[1]
    assert "the target, 0.001 s" in failures, out
