"""inference.memory: a fixed glibc mmap threshold gives freed picture buffers back to the OS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from inference import memory
from inference.settings import ROOT

GLIBC = memory.GLIBC

# After a first 24 MB buffer is freed, glibc (dynamic threshold) serves later 12 MB "pictures" from the
# heap; with a small object allocated after each, the heap cannot shrink and the process keeps them.
_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from inference.memory import rss_mb, tune_malloc

    if sys.argv[1] != "0":
        assert tune_malloc(float(sys.argv[1]))
    a = np.ones(24 << 20, np.uint8)
    del a
    base = rss_mb()
    keep = []
    for _ in range(8):
        b = np.ones(12 << 20, np.uint8)
        keep.append(np.ones(1000, np.uint8))
        del b
    print(rss_mb() - base)
""")


def _growth_mb(threshold: str) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, threshold], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")  # CI and the Docker image are glibc
def test_fixed_threshold_returns_picture_buffers_to_the_os():
    untuned, tuned = _growth_mb("0"), _growth_mb("4")
    assert untuned > 8, f"glibc's dynamic threshold should keep a freed 12 MB buffer (grew {untuned:.1f} MB)"
    assert tuned < 2, f"with a fixed 4 MiB threshold nothing should stay behind (grew {tuned:.1f} MB)"


def test_zero_leaves_the_allocator_alone():
    assert memory.tune_malloc(0) is False
    assert memory.tune_malloc(-1) is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_setting_is_applied_once_and_reported():
    assert memory.tune_malloc(8.0) is True  # the default, so the rest of the session is unchanged
    assert memory.applied()["mmap_threshold"] == 8 * 1024 * 1024
    assert memory.tune_malloc(8.0) is True  # idempotent


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_pipeline_applies_the_setting(tiny_bundle):
    from inference.pipeline import Pipeline
    from inference.settings import Settings

    Pipeline.from_bundle(tiny_bundle, Settings(malloc_mmap_threshold_mb=16))
    assert memory.applied()["mmap_threshold"] == 16 * 1024 * 1024
    Pipeline.from_bundle(tiny_bundle, Settings())  # back to the default (8 MiB) for the rest of the session
    assert memory.applied()["mmap_threshold"] == 8 * 1024 * 1024


def test_freeze_and_unfreeze_the_startup_heap():
    import gc

    try:
        frozen = memory.freeze_startup_heap()
        # modules, pytest, numpy...: all of startup. A daemon thread an earlier test left (a Ray or PostgreSQL
        # client) may free a few frozen objects in between, so the count is not compared to the object.
        assert frozen > 1000 and frozen - 100 <= gc.get_freeze_count() <= frozen
        before = len(gc.get_objects(generation=2))
        memory.unfreeze_heap()
        assert gc.get_freeze_count() == 0 and len(gc.get_objects(generation=2)) >= before + frozen - 100
    finally:
        gc.unfreeze()
