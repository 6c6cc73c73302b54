"""Process CPU: keep numpy's BLAS from fighting onnxruntime for the cores.

The classify and decide steps each multiply a head's embedding with the 7,229 known prototypes: a small product
(1.9 M multiply-adds per head) that OpenBLAS splits over every core by default. While onnxruntime's threads (or
another request) hold the cores, the split product waits for a core instead: measured on 2 cores, one busy, 0.13 ms
idle became 0.57-0.65 ms with 2 BLAS threads and 0.20-0.38 ms with 1; in the bench, interleaved with the reference
design's spinning sessions, the classify and decide stages read 5-7 ms each for one head. So the pipeline runs
BLAS on `BLAS_THREADS` threads (default 1); 0 leaves the library's own choice.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_applied: dict = {}


def limit_blas_threads(threads: int) -> dict:
    """Process-wide, idempotent: numpy's BLAS runs on `threads` threads (0: unchanged). Returns what was applied
    ({library: threads}), empty when nothing was (0, or no BLAS that threadpoolctl can reach)."""
    if threads <= 0:
        return {}
    if _applied.get("threads") == threads:
        return dict(_applied["libraries"])
    import numpy  # noqa: F401  (the BLAS must be loaded for threadpoolctl to find it)
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    libraries = {i["internal_api"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    _applied.update(threads=threads, libraries=libraries)
    log.debug("BLAS threads: %s", libraries)
    return dict(libraries)
