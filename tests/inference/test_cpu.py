"""inference.cpu: the pipeline runs numpy's BLAS on BLAS_THREADS threads (default 1)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from inference import cpu
from inference.cpu import limit_blas_threads
from inference.settings import Settings


def blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_the_limit_is_applied_and_zero_leaves_it(monkeypatch):
    assert limit_blas_threads(0) == {}
    applied = limit_blas_threads(1)
    assert applied and set(applied.values()) == {1} and blas_threads() == {1}
    assert limit_blas_threads(1) == applied  # idempotent
    x = np.ones((3, 4), np.float32)
    assert (x @ x.T == 4).all()  # numpy still multiplies


def test_the_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("BLAS_THREADS", "2")
    assert Settings.from_env(env_file=None).blas_threads == 2
    monkeypatch.delenv("BLAS_THREADS")
    assert Settings.from_env(env_file=None).blas_threads == 1


def test_a_pipeline_applies_its_settings(tiny_bundle):
    from threadpoolctl import threadpool_limits

    from inference.pipeline import Pipeline

    threadpool_limits(limits=2, user_api="blas")  # as if nothing had limited it yet
    assert blas_threads() == {2}
    cpu._applied.clear()  # forget the earlier test's call (the limit is process-wide and idempotent)
    Pipeline.from_bundle(tiny_bundle, Settings(ort_threads=1, blas_threads=1))
    assert blas_threads() == {1}
