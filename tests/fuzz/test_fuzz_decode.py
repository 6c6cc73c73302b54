"""A short atheris run over the decode entry point (CI): 0 crashes, and how many inputs ran.

The long run is a documented command (README, "Reliability"):
    python tests/fuzz/fuzz_decode.py -max_total_time=3600 -timeout=10 -rss_limit_mb=2048 runs/fuzz-decode
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is in the dev extra: pip install -e '.[dev]'")

HARNESS = Path(__file__).resolve().parent / "fuzz_decode.py"
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))


def fuzz(tmp_path: Path, *flags: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[Path]]:
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    artifacts.mkdir()
    p = subprocess.run([sys.executable, str(HARNESS), "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1",
                        f"-artifact_prefix={artifacts}/", *flags, str(corpus)],
                       capture_output=True, text=True, timeout=SECONDS + 120, env={**os.environ, **(env or {})})
    return p, sorted(artifacts.iterdir())


def test_fuzz_decode_short_run(tmp_path):
    p, crashes = fuzz(tmp_path, f"-max_total_time={SECONDS}")
    log = p.stderr + p.stdout
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    cov = re.findall(r"cov: (\d+)", log)
    assert p.returncode == 0 and not crashes, (p.returncode, [c.name for c in crashes], log[-4000:])
    assert done, log[-4000:]
    runs, secs = int(done.group(1)), int(done.group(2))
    assert runs >= 500, f"only {runs} inputs in {secs} s"
    print(f"\nfuzz decode: {runs} inputs in {secs} s, coverage {cov[-1] if cov else '?'} edges, 0 crashes")


def test_fuzz_harness_catches_a_planted_bug(tmp_path):
    """The harness is not vacuous: a decode that raises anything but ImageError is reported as a crash."""
    p, crashes = fuzz(tmp_path, "-runs=200", env={"FUZZ_DECODE_SELFTEST": "1"})
    assert p.returncode != 0
    assert "planted bug" in p.stderr + p.stdout
    assert [c.name for c in crashes if c.name.startswith("crash-")]
