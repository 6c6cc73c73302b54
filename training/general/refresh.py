"""Correct who a built bundle's characters are, without a rebuild.

    python -m training.general.refresh [--bundle models] [--check 50] [--all] [--version V]

`labels.build()` decides who each character is (name, work, MyAnimeList page) and which pictures are one
character (merges). When those facts are corrected, e.g. a work or a merge found wrong by eye (`series_checked.json`,
`merge_checked.json`), this brings the bundle in line:

1. `characters.json` is rewritten from the labels for the characters the bundle knows;
2. every character whose pictures changed gets its prototype in `known.npz` recomputed the way
   `training.general.bundle` makes it: the serving detector cuts each picture's head as `training.general.data`
   does, the bundle's encoder embeds it (`embed_crops`), the gallery view's normalised sum is pooled per part. A
   character is new (new pictures in the data, or a merge undone), gone (a merge made), one a merge was made into
   (it holds the pictures of a tag the bundle knew apart), or one a merge was undone from (`merge_checked.json`);
   with a hubness correction (`known.hub`) every prototype's offset is recomputed, with the manifest's centre;
3. before writing, `--check` characters it did not change are recomputed the same way and must match what the
   bundle holds (cosine >= 0.999 in the float16 it stores), so the prototypes written are what a rebuild would give.
   With `--all` every character is recomputed (pictures were added to characters the bundle knows: nothing else
   says which): those that move are rewritten, and at least half must reproduce the bundle's.

The encoder, classifier and decision stay as they are (their calibration saw the old characters); the manifest's
sha256 and `known.characters` are updated. The 32 faces/ characters are never recomputed (their prototypes also
use the faces/ crops), so a correction must not touch them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.common import DATA, ROOT, imread_rgb
from training.general.labels import MERGE_CHECKED, build


def known_tags(labels, rows) -> list[str]:
    """The characters a bundle knows by picture: every label with a picture in characters/ or faces/ (sorted)."""
    with_pictures = {r.tag for r in rows} | {lab.tag for lab in labels if "faces" in lab.sources}
    return sorted(lab.tag for lab in labels if lab.tag in with_pictures)


def merged_into(rows, names: list[str], old: set[str]) -> set[str]:
    """The characters of `names` that hold the pictures of another tag the old bundle knew apart (a merge made)."""
    holds: dict[str, set[str]] = {}
    for r in rows:
        holds.setdefault(r.tag, set()).add(r.source_tag)
    return {t for t in names if any(s != t and s in old for s in holds.get(t, ()))}


def embed_pictures(pipe, paths: list[str]) -> np.ndarray:
    """(len(paths), D) embeddings of characters/ pictures as the bundle builder makes them: the serving detector
    cuts each picture's head as `training.general.data` does, the bundle's encoder embeds it (`embed_crops`)."""
    from inference.detect import Detector
    from training.general.bundle import embed_crops
    from training.general.data import head_crop

    b = pipe.bundle
    det = Detector(b.spec.detector, b.sessions.get("detector"), cascade_path=b.files["detector"].path)
    crops = np.stack([head_crop(det, b.spec.encoder.crop, imread_rgb(DATA / "characters" / p))[0] for p in paths])
    return embed_crops(pipe.embedder, crops)


def prototype(view, emb: np.ndarray) -> np.ndarray:
    """One character's prototype from its pictures' embeddings: the gallery view's normalised sum, pooled per part."""
    s = view.apply(emb).sum(0, keepdims=True)
    return view.pool(s / max(float(np.linalg.norm(s)), 1e-12))[0]


def split_moved(probe: list[str], cos: np.ndarray, every: bool) -> tuple[list[str], np.ndarray]:
    """(the characters whose recomputed prototype moved, the cosines of those that reproduce the bundle's). Without
    `every` none may move; with it (all recomputed, pictures were added) at least half must reproduce: if most
    move, the detector, encoder or crops changed, and only a rebuild is right."""
    ok = cos >= 0.999
    if len(probe) and (ok.sum() < len(probe) / 2 if every else not ok.all()):
        raise SystemExit("recomputed prototypes differ from the bundle's: its detector, encoder or crops changed; "
                         "rebuild with training.general.bundle")
    return [t for t, k in zip(probe, ok) if not k], cos[ok]


def recompute(pipe, rows_by_tag: dict[str, list], tags: list[str]) -> np.ndarray:
    """(len(tags), view width) prototypes of `tags` from their characters/ pictures, as the bundle builder makes them."""
    view = pipe.bundle.spec.classifier.view
    out = [prototype(view, embed_pictures(pipe, [r.path for r in rows_by_tag[t]])) for t in tags]
    return np.stack(out).astype(np.float32)


def refresh(bundle: Path, check: int = 50, seed: int = 0, version: str | None = None, every: bool = False) -> dict:
    """Bring `bundle` in line with the labels (see the module's doc). `every`: recompute every character but the
    faces/ ones, for pictures added to characters the bundle knows (the data grew): those whose prototype moves are
    the changed ones, and the check is that most of the others (>= half) reproduce what the bundle holds."""
    from inference.manifest import KnownSpec
    from inference.pipeline import Pipeline
    from inference.settings import Settings
    from training.general.bundle import write_characters, write_known
    from training.manifest import update_section

    manifest = json.loads((bundle / "manifest.json").read_text())
    labels, rows, _ = build()
    by_tag = {lab.tag: lab for lab in labels}
    rows_by_tag: dict[str, list] = {}
    for r in rows:
        rows_by_tag.setdefault(r.tag, []).append(r)
    with np.load(bundle / manifest["known"]["file"], allow_pickle=False) as z:
        old_names, old_vectors = [str(n) for n in z["names"]], np.asarray(z["vectors"], np.float32)
    old = dict(zip(old_names, old_vectors))
    names = known_tags(labels, rows)
    faces = {lab.tag for lab in labels if "faces" in lab.sources}
    undone = {v["not"] for v in json.loads(MERGE_CHECKED.read_text()).values()}
    changed = sorted((set(names) - set(old)) | (undone & set(names)) | merged_into(rows, names, set(old)))
    gone = sorted(set(old) - set(names))
    if set(changed) & faces:
        raise SystemExit(f"{sorted(set(changed) & faces)} are faces/ characters: rebuild the bundle instead")
    pipe = Pipeline.from_bundle(bundle, Settings(verify_heads=False))
    rng = np.random.default_rng(seed)
    pool = sorted(set(names) & set(old) - set(changed) - faces)
    probe = pool if every else [pool[i] for i in rng.choice(len(pool), min(check, len(pool)), replace=False)]
    got = recompute(pipe, rows_by_tag, probe)
    have = np.stack([old[t] for t in probe])
    cos = np.sum(got * have, 1) / np.linalg.norm(have, axis=1) / np.linalg.norm(got, axis=1)
    moved, same = split_moved(probe, cos, every)
    print(f"check: {len(probe)} unchanged characters recomputed, cosine to the bundle's min {cos.min():.5f}"
          + (f"; {len(same)} reproduce it (>= 0.999), {len(moved)} moved (their pictures changed)" if every else ""))
    new = {t: g for t, g, c in zip(probe, got, cos) if c < 0.999} if every else {}  # the others stay as shipped
    new.update(zip(changed, recompute(pipe, rows_by_tag, changed)))
    changed = sorted(set(changed) | set(moved))
    vectors = np.stack([new[t] if t in new else old[t] for t in names])
    path = bundle / manifest["known"]["file"]
    # every offset of a hubness correction is recomputed: a changed prototype moves its neighbours' too
    write_known(path, names, vectors, KnownSpec.parse(manifest["known"]).hub)
    known_and_32 = set(names) | set(json.loads((bundle / manifest["labels"]).resolve().read_text()))
    write_characters(bundle / manifest["characters"]["file"], labels, known_and_32 & set(by_tag))
    update_section("known", {**manifest["known"], "characters": len(names)}, bundle=bundle)
    # a new version (what `/about` and `/healthz` name), when asked: the bundle's facts changed, not its models
    update_section("characters", {**manifest["characters"]}, bundle=bundle, **({"version": version} if version else {}))
    report = {"known": len(names), "recomputed": changed, "removed": gone, "moved": moved,
              "check_min_cosine": round(float(same.min() if len(same) else 1.0), 5)}
    shown = changed if len(changed) <= 20 else changed[:20] + [f"... {len(changed) - 20} more"]
    print(f"{path}: {len(names)} characters ({len(old_names)} before); recomputed {len(changed)} "
          f"({len(moved)} whose pictures changed) {shown}; removed {gone}")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "models")
    ap.add_argument("--check", type=int, default=50, help="unchanged characters recomputed as a check")
    ap.add_argument("--version", help="the refreshed bundle's version (default: unchanged)")
    ap.add_argument("--all", action="store_true",
                    help="recompute every character (not faces/ ones): pictures were added to known characters")
    a = ap.parse_args()
    refresh(a.bundle, a.check, version=a.version, every=a.all)


if __name__ == "__main__":
    main()
