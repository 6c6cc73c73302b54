"""Open set: how many heads of characters a bundle does not know it names anyway (target <= .05).

    python -m training.general.openset [--bundle models] [--json]

The characters `split.py` holds out whole ('heldout_char': about 4 % of the characters, by a hash of the tag; the
general encoder never trained on them) are taken out of the bundle's known gallery, and every picture of them
(the head cut by the serving detector, as `training.general.data` cuts it) goes through the serving `Classifier`
and decision: the share the bot would name (`known` score >= the bundle's threshold) is what it says about a
character it does not know. The same characters are removed from any bundle measured, so two bundles (before and
after a refresh that adds characters and pictures) are compared on the same heads.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.common import ROOT


def without(pipe, tags: set[str]):
    """`pipe`'s classifier with the known characters `tags` taken out of its gallery."""
    from inference.classify import Classifier

    clf, known = pipe.classifier, pipe.bundle.known
    keep = [i for i, n in enumerate(known.names) if n not in tags]
    fewer = replace(known, names=[known.names[i] for i in keep], vectors=known.vectors[keep],
                    offsets=None if known.offsets is None else known.offsets[keep])
    return Classifier(clf.spec, clf.labels, weights=clf.weights, session=clf.session, known=fewer,
                      characters=clf.characters)


def unknown_named(pipe, emb: np.ndarray, tags: list[str]) -> dict:
    """Heads `emb` of characters `tags`, none of them known: the share named at the bundle's threshold."""
    from inference.decide import decide

    clf = without(pipe, set(tags))
    threshold = pipe.decision.threshold if pipe.decision is not None else 0.3
    cands = clf(emb, top_k=1)
    top1 = np.array([c[0].probability for c in cands])
    k = decide(pipe.decision, emb, top1, clf, None)
    named = k >= threshold
    return {"unknown_named": round(float(named.mean()) if len(named) else 0.0, 4), "heads": int(len(emb)),
            "characters": len(set(tags)), "threshold": threshold, "known_characters": len(clf.known.names),
            "named_as": sorted({c[0].name for c, n in zip(cands, named) if n})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "models")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from inference.pipeline import Pipeline
    from inference.settings import Settings
    from training.general.dataset import splits
    from training.general.labels import build
    from training.general.refresh import embed_pictures

    labels, rows, _ = build()
    held = [r for r, s in zip(rows, splits(labels, rows)) if s == "heldout_char"]
    pipe = Pipeline.from_bundle(a.bundle, Settings(verify_heads=False))
    r = unknown_named(pipe, embed_pictures(pipe, [h.path for h in held]), [h.tag for h in held])
    if a.json:
        print(json.dumps(r))
        return
    print(f"{a.bundle} ({r['known_characters']} known once the {r['characters']} held-out characters are taken out): "
          f"{r['heads']} pictures of them, named at the threshold {r['threshold']}: {r['unknown_named']:.4f} "
          f"(target <= .05)")


if __name__ == "__main__":
    main()
