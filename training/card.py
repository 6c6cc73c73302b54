"""Write the "What ships" block of models/MODEL_CARD.md from the bundle's manifest: its name and version, and each
model file with its size and the sha256 the bundle is checked against, so that the card says what the bundle holds
whenever the bundle changes. Nothing else of the card is touched (the rest is written by hand; the long record of
each model is in docs/experiments/).

    python -m training.card [--bundle models] [--check]

`--check` writes nothing and exits 1 when the block is not what the manifest says (tests/models/test_model_card.py
runs the same check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inference.manifest import Manifest
from training.manifest import MODELS

CARD = "MODEL_CARD.md"
BEGIN = "<!-- what ships: written by `python -m training.card` from manifest.json; do not edit by hand -->"
END = "<!-- end of what ships -->"
WHAT = {"detector": "head detector", "encoder": "encoder (blocks: {blocks})", "classifier": "classifier ({labels} characters)",
        "verifier": "head verifier", "known": "known characters' prototypes ({n:,})",
        "characters": "who each known character is"}


def size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def shipped(bundle: Path) -> str:
    """The block between the markers, from `bundle`/manifest.json and the files' sizes."""
    raw = json.loads((bundle / "manifest.json").read_text())
    m = Manifest.parse(raw)
    blocks = ", ".join(f"{b.name} {b.dims}" for b in m.encoder.blocks) or "one"
    lines = [f"Bundle `{m.name}` version **{m.version}** (`{bundle.name}/manifest.json`, format "
             f"{raw.get('format', 1)}; docs/bundle.md). Every file is checked against its sha256 when the bundle loads.",
             "", "| part | file | size | sha256 |", "|---|---|---:|---|"]
    labels = bundle / m.labels
    count = len(json.loads(labels.read_text())) if labels.is_file() else "?"
    for section, ref in m.files().items():
        what = WHAT.get(section, section).format(blocks=blocks, labels=count,
                                                 n=(raw.get("known") or {}).get("characters", 0))
        lines.append(f"| {what} | `{ref.file}` | {size(bundle / ref.file)} | `{ref.sha256}` |")
    lines.append(f"| the classifier's labels ({count}, Danbooru tags) | `{m.labels}` | "
                 f"{size(labels) if labels.is_file() else '?'} | (not checked) |")
    return "\n".join(lines)


def update(text: str, block: str) -> str:
    """`text` with the part between the markers replaced by `block`."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"the card must hold the two markers once each, in order:\n{BEGIN}\n{END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=MODELS)
    ap.add_argument("--check", action="store_true", help="exit 1 if the card is out of date; write nothing")
    args = ap.parse_args(argv)
    path = args.bundle / CARD
    text = path.read_text()
    new = update(text, shipped(args.bundle))
    if args.check:
        if new != text:
            print(f"{path}: the 'What ships' block is out of date; run python -m training.card", file=sys.stderr)
            return 1
        print(f"{path}: up to date")
        return 0
    path.write_text(new)
    print(f"wrote the 'What ships' block of {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
