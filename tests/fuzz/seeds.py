"""The fuzzer's seed corpus: the small items of the hostile-picture corpus (one of each kind)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_SEED_BYTES = 32 * 1024


def seeds() -> dict[str, bytes]:
    sys.path[:0] = [str(ROOT / "tests")]
    from hostile.corpus import corpus

    return {name: item.data for name, item in corpus().items() if 0 < len(item.data) <= MAX_SEED_BYTES}


def write_seeds(directory: Path) -> int:
    """Fill `directory` with the seeds (named by content hash, as libFuzzer does). Returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    for data in seeds().values():
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(list(directory.iterdir()))
