"""Run every corpus item through `Pipeline.recognize` under a hard address-space limit (RLIMIT_AS).

    python tests/hostile/bounded_run.py BUNDLE_DIR [HEADROOM_MIB]

The corpus and the pipeline are built first; then the process may grow by at most HEADROOM_MIB of
address space (default 768). A decode that tried to allocate more would get MemoryError (reported as
a crash, or refused politely as ImageTooLargeError) instead of eating the machine. Prints one JSON line
per item: name, outcome ("ok" or "error:<Class>" or "crash:<Class>"), seconds, peak RSS in MiB.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "hostile")]


def vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def main() -> int:
    from corpus import corpus

    from inference.errors import ImageError
    from inference.pipeline import Pipeline
    from inference.settings import Settings

    items = corpus()
    pipe = Pipeline.from_bundle(sys.argv[1], Settings(ort_threads=1))
    pipe.recognize(items["plain.jpg"].data)  # warm up: onnxruntime's arenas exist before the limit
    headroom = int(sys.argv[2] if len(sys.argv) > 2 else 768) << 20
    limit = vm_size() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(json.dumps({"limit_mib": limit >> 20, "headroom_mib": headroom >> 20}), flush=True)
    for name, item in items.items():
        t0 = time.perf_counter()
        try:
            pipe.recognize(item.data)
            outcome = "ok"
        except ImageError as e:
            outcome = f"error:{type(e).__name__}"
        except BaseException as e:  # noqa: BLE001 - anything else is what we are looking for
            outcome = f"crash:{type(e).__name__}:{e}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"name": name, "outcome": outcome, "seconds": round(time.perf_counter() - t0, 4),
                          "maxrss_mib": round(rss, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
