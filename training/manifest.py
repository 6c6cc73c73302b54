"""Write one section of `models/manifest.json` (read-modify-write under a lock), with sha256 filled in.

Both trainers (encoder + classifier, detector) call `update_section`, so neither overwrites the other.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from inference.bundle import sha256_file

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


sha256_of = sha256_file  # one checksum function for writing and for verifying bundles


REQUIRED = ("detector", "encoder", "classifier")  # the sections a bundle cannot load without


def write_manifest(path: Path, manifest: dict, indent: int = 2, partial: bool = False) -> None:
    """Write a bundle's manifest only once `inference.manifest.Manifest.parse` (what serving reads) takes it: a bad
    one fails here, at training time, not at the next load. With `partial`, a bundle still being assembled (one of
    `REQUIRED` not written yet, as when the detector's trainer starts a new one) is written unchecked; it is
    checked from the write that completes it on. Atomic (temporary file, then rename)."""
    from inference.manifest import Manifest

    if not partial or all(k in manifest for k in REQUIRED):
        Manifest.parse(manifest, default_name=path.parent.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=indent, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def update_section(section: str, value: dict, bundle: Path = MODELS, merge: bool = False, **top_level) -> dict:
    """Set manifest[section] = value (with `sha256` computed from value["file"]) and any top-level keys.

    With merge=True, only the given keys of the section change (e.g. the detector trainer setting
    ``encoder.crop`` without touching the rest of the encoder section)."""
    bundle.mkdir(parents=True, exist_ok=True)
    path = bundle / "manifest.json"
    with open(bundle / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = json.loads(path.read_text()) if path.exists() else {
            "format": 1,
            "name": "crystal-eyes-default",
            "labels": "../chara.json",
        }
        value = {**manifest.get(section, {}), **value} if merge else dict(value)
        if "file" in value:
            value["sha256"] = sha256_of(bundle / value["file"])
        manifest[section] = value
        manifest.update(top_level)
        write_manifest(path, manifest, partial=True)
    return manifest
