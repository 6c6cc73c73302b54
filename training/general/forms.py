"""How well a bundle names a character in a form it has no picture of: leave-variant-out on one source.

    python -m training.general.forms [--bundle models] [--source kancolle] [--hold variant|source] [--json]

For every character of `--source` with pictures of two or more variants (KanColle: a remodel form or a seasonal
outfit), each variant in turn is held out: the character's prototype is rebuilt from its other variants' pictures
(the way the bundle builds prototypes, `refresh.prototype`), and each held-out picture is named among *all* the
bundle's characters (the classifier's and every known one; the other characters keep their shipped prototypes)
through the serving steps: the head cut by the serving detector as `training.general.data` cuts it, the bundle's
encoder, `Classifier` (one calibrated ranking) and the decision (`known` score against the bundle's threshold).
`--hold source` holds out a source instead (Touhou: a character's pixel-art picture named from its game portrait).

Printed: top-1 / top-3 of the full ranking and of the prototypes' cosines alone, and the share of held-out pictures
the bot names right / names wrong / says "I don't recognise" at the bundle's threshold. Characters with one variant
cannot be held out and are counted apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.common import ROOT


def held_out_folds(tags: list[str], keys: list[str], queries: np.ndarray | None = None) -> list[tuple[str, str, np.ndarray,
                                                                                                          np.ndarray]]:
    """(tag, held-out key, query picture indices, prototype picture indices) per character and key, for the
    characters with two or more keys (`keys`: each picture's variant or source). `queries`: which pictures may be
    queried (default all); a prototype uses every other picture of the character, whatever its key."""
    tags_a, keys_a = np.asarray(tags), np.asarray(keys)
    may = np.ones(len(tags), bool) if queries is None else np.asarray(queries, bool)
    folds = []
    for t in sorted(set(tags)):
        mine = tags_a == t
        for k in sorted(set(keys_a[mine & may])):
            held = mine & (keys_a == k)
            rest = mine & ~held
            if rest.any():
                folds.append((t, str(k), np.where(held & may)[0], np.where(rest)[0]))
    return folds


def rank_hits(ranked: list[list[str]], truth: list[str], k: int = 3) -> tuple[float, float]:
    """(top-1, top-k) of ranked names against the true ones."""
    if not truth:
        return 0.0, 0.0
    return (float(np.mean([bool(r) and r[0] == t for r, t in zip(ranked, truth)])),
            float(np.mean([t in r[:k] for r, t in zip(ranked, truth)])))


def evaluate(pipe, emb: np.ndarray, tags: list[str], keys: list[str], queries: np.ndarray | None = None) -> dict:
    """Leave-`keys`-out on pictures with embeddings `emb` (N, D) and characters `tags`, among all of `pipe`'s."""
    from inference.decide import decide
    from training.general.refresh import prototype

    clf, known = pipe.classifier, pipe.bundle.known
    view = pipe.bundle.spec.classifier.view
    column = {n: i for i, n in enumerate(known.names)}
    missing = sorted(set(tags) - set(column))
    if missing:
        raise SystemExit(f"{len(missing)} characters are not in the bundle ({missing[:5]} ...): refresh it first")
    threshold = pipe.decision.threshold if pipe.decision is not None else 0.3
    folds = held_out_folds(tags, keys, queries)
    ranked, cos_ranked, truth, named_right, named_wrong = [], [], [], 0, 0
    names = np.array(known.names)
    for tag, _, q, rest in folds:
        p = prototype(view, emb[rest])
        p = p / max(float(np.linalg.norm(p)), 1e-12)
        cos = clf.cosines(emb[q])  # shipped prototypes; the held-out character's is rebuilt without the held form
        j = column[tag]
        cos[:, j] = view.apply(emb[q]) @ p - (known.offsets[j] if known.offsets is not None else 0.0)
        cands = clf(emb[q], top_k=3, cos=cos)
        top1 = np.array([c[0].probability for c in cands])
        k = decide(pipe.decision, emb[q], top1, clf, None, cos)
        for c, score in zip(cands, k):
            ranked.append([x.name for x in c])
            truth.append(tag)
            named = score >= threshold
            named_right += int(named and c[0].name == tag)
            named_wrong += int(named and c[0].name != tag)
        cos_ranked += [list(names[np.argsort(-row)[:3]]) for row in cos]
    n = len(truth)
    t1, t3 = rank_hits(ranked, truth)
    c1, c3 = rank_hits(cos_ranked, truth)
    chars = sorted(set(tags))
    held_chars = sorted({f[0] for f in folds})
    return {"pictures": n, "folds": len(folds), "characters": len(chars), "characters_held_out": len(held_chars),
            "characters_one_variant": len(chars) - len(held_chars),
            "top1": round(t1, 4), "top3": round(t3, 4), "cosine_top1": round(c1, 4), "cosine_top3": round(c3, 4),
            "named_right": round(named_right / max(n, 1), 4), "named_wrong": round(named_wrong / max(n, 1), 4),
            "not_recognised": round((n - named_right - named_wrong) / max(n, 1), 4), "threshold": threshold,
            "known_characters": len(known.names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "models")
    ap.add_argument("--source", default="kancolle", help="comma-separated characters/ sources (default %(default)s)")
    ap.add_argument("--hold", choices=("variant", "source"), default="variant", help="what is held out")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from inference.pipeline import Pipeline
    from inference.settings import Settings
    from training.general.labels import build
    from training.general.refresh import embed_pictures

    sources = set(a.source.split(","))
    _, rows, _ = build()
    chars = {r.tag for r in rows if r.source in sources}
    rows = [r for r in rows if r.tag in chars]  # every picture of those characters (a merged portrait too)
    pipe = Pipeline.from_bundle(a.bundle, Settings(verify_heads=False))
    emb = embed_pictures(pipe, [r.path for r in rows])
    keys = [r.variant if a.hold == "variant" else r.source for r in rows]
    r = evaluate(pipe, emb, [r.tag for r in rows], keys, np.array([r.source in sources for r in rows]))
    r.update(source=sorted(sources), hold=a.hold)
    if a.json:
        print(json.dumps(r))
        return
    print(f"{a.bundle} ({r['known_characters']} known): {a.source}, each {a.hold} held out: {r['pictures']} pictures "
          f"of {r['characters_held_out']} characters ({r['characters_one_variant']} with one {a.hold} left out); "
          f"top-1 {r['top1']:.3f}, top-3 {r['top3']:.3f} (prototype cosine alone {r['cosine_top1']:.3f} / "
          f"{r['cosine_top3']:.3f}); at the threshold {r['threshold']}: named right {r['named_right']:.3f}, named "
          f"wrong {r['named_wrong']:.3f}, not recognised {r['not_recognised']:.3f}")


if __name__ == "__main__":
    main()
