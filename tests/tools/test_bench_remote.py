"""`python -m tools.bench_remote`, the whole-bot benchmark of remote inference (docs/scaling.md): it lives in tools/,
above the bot it drives, and its command still answers. The run itself needs Ray and an idle machine: not here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools import bench_remote

ROOT = Path(__file__).resolve().parents[2]


def test_the_command_answers_and_is_documented():
    proc = subprocess.run([sys.executable, "-m", "tools.bench_remote", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m tools.bench_remote") and "--concurrency" in proc.stdout
    assert "python -m tools.bench_remote" in (ROOT / "docs" / "scaling.md").read_text()
    assert not (ROOT / "service" / "bench.py").exists()


def test_percentiles_pick_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert bench_remote.pct(values, 50) == 51.0 and bench_remote.pct(values, 99) == 99.0
    assert bench_remote.pct([3.0], 99) == 3.0
    with pytest.raises(IndexError):
        bench_remote.pct([], 50)


def test_a_free_port_is_free():
    import socket

    port = bench_remote.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nobody holds it
