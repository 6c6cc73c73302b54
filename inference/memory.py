"""Process memory: keep the allocator from holding on to freed picture buffers.

A decoded picture is big (a 3000x3000 RGB PNG is 27 MB, and decode, convert and resize each make one).
glibc serves buffers above its mmap threshold with mmap, and gives them back to the kernel on free.
But by default that threshold is *dynamic*: after the first big buffer is freed, glibc raises it to
that buffer's size (up to 32 MB), so later pictures come from the heap, which fragments and stays at
its high-water mark. A long run then settles about 55 MB higher (see README "Performance").

`tune_malloc` fixes the threshold (which also turns the dynamic raise off), so buffers of at least
`MALLOC_MMAP_THRESHOLD_MB` (default 8) are always mapped and unmapped, while smaller ones (crops,
tensors, a 2 MP picture and its annotated copy) keep the fast heap path. With 4 MiB the annotate step
paid page faults on every reply (overhead 1.37 > 1.3); with 8 MiB all bench targets hold (README).
glibc only; elsewhere it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's <malloc.h>
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
_applied: dict[str, int] = {}


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def tune_malloc(threshold_mb: float) -> bool:
    """Set glibc's mmap threshold to `threshold_mb` MiB (0 or less: leave the allocator alone).

    Returns True when the allocator took the setting. Idempotent; process-wide.
    """
    if threshold_mb <= 0:
        return False
    value = int(threshold_mb * 1024 * 1024)
    if _applied.get("mmap_threshold") == value:
        return True
    if not GLIBC:
        log.debug("tune_malloc: not glibc, allocator left as is")
        return False
    try:
        ok = _libc().mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(value)) == 1
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        ok = False
    if ok:
        _applied["mmap_threshold"] = value
    else:  # older glibc refuses values above 32 MiB on 64-bit
        log.warning("tune_malloc: glibc refused an mmap threshold of %s MiB", threshold_mb)
    return ok


def rss_mb() -> float:
    """This process's resident memory (VmRSS) in MiB; NaN where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return float("nan")


def trim() -> bool:
    """Hand the allocator's free pages back to the OS now (glibc's malloc_trim); False elsewhere."""
    return bool(GLIBC and _libc().malloc_trim(0))


def applied() -> dict[str, int]:
    """What tune_malloc has set in this process (for bench output and tests)."""
    return dict(_applied)


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now (modules, models, the bot's cogs) into the
    garbage collector's permanent generation. They live for the whole process anyway; afterwards a
    full (generation 2) collection walks only what serving allocates, so its pause on the event loop
    stays short. Returns how many objects were frozen. Call it once startup is done."""
    import gc

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def unfreeze_heap() -> None:
    """Undo freeze_startup_heap when the service shuts down, so a process that starts services again
    (the tests) can collect what the stopped one left behind."""
    import gc

    gc.unfreeze()
