"""Loading a bundle, its label list: a JSON array of character tags, or the reference system's
`idx_label.pkl` (one pickled numpy array of fixed-width unicode strings), which is *never unpickled* (unpickling
runs code): its opcodes are read with `pickletools` and the array's raw bytes decoded."""

from __future__ import annotations

import json
import pickletools
import re
from pathlib import Path

from .errors import BundleError


def load_labels(root: Path, rel: str) -> list[str]:
    """The label list `rel` (relative to the bundle directory `root`), checked: non-empty, no duplicates."""
    path = (root / rel).resolve()
    if not path.is_file():
        raise BundleError(f"Label list {rel} is missing (looked at {path}).")
    if path.suffix == ".pkl":
        return read_label_pickle(path.read_bytes())
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"Label list {path.name} is not valid JSON: {e}") from None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise BundleError(f"Label list {path.name} must be a non-empty JSON array of character tags.")
    if len(set(labels)) != len(labels):
        raise BundleError(f"Label list {path.name} has duplicate names.")
    return labels


def read_label_pickle(data: bytes) -> list[str]:
    """Labels from a pickled numpy unicode array (e.g. dtype '<U43'), without executing the pickle."""
    itemsize = None
    raw = None
    allowed_globals = {"numpy.core.multiarray _reconstruct", "numpy._core.multiarray _reconstruct",
                       "numpy ndarray", "numpy dtype"}
    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            name = arg if op.name == "GLOBAL" else " ".join(strings[-2:]) if op.name == "STACK_GLOBAL" else None
            if name is not None and name not in allowed_globals:
                raise BundleError(f"Label pickle references {name!r}; only a numpy string array is accepted.")
            if op.name in ("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"):
                raise BundleError(f"Label pickle uses {op.name}; only a numpy string array is accepted.")
            if isinstance(arg, str):
                strings.append(arg)
            if isinstance(arg, str):
                m = re.fullmatch(r"[<>|=]?U(\d+)", arg)
                if m:
                    itemsize = int(m.group(1)) * 4
            if isinstance(arg, (bytes, bytearray)) and (raw is None or len(arg) > len(raw)):
                raw = bytes(arg)
    except BundleError:
        raise
    except Exception as e:
        raise BundleError(f"Label pickle is unreadable: {e}") from None
    if not itemsize or raw is None or len(raw) % itemsize:
        raise BundleError("Label pickle does not hold a numpy array of unicode strings.")
    labels = [raw[i:i + itemsize].decode("utf-32-le").rstrip("\x00") for i in range(0, len(raw), itemsize)]
    if not labels or not all(labels):
        raise BundleError("Label pickle holds empty names.")
    return labels
