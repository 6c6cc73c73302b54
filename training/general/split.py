"""Deterministic validation splits of ../shared/data/characters (leave-variant-out and leave-characters-out).

- 'heldout_char': every picture of about 4 % of the characters (by a hash of the tag) is left out of training, for
  the open-set measurement (a character the encoder never saw).
- 'val_variant': of the other characters with two or more variants, about half (by hash) have one variant (the
  one with the lowest hash) left out: the "unseen outfit" query. Their other variants stay in training.
- 'train': the rest.
"""

from __future__ import annotations

from training.common import post_bucket

HELDOUT_CHAR_FRAC = 0.04
VAL_CHAR_FRAC = 0.5


def assign_splits(rows, keep: frozenset[str] = frozenset()) -> list[str]:
    """One split per row; characters in `keep` (the 32 of faces/, whose faces train them anyway) are never
    held out whole."""
    variants: dict[str, list[str]] = {}
    for r in rows:
        variants.setdefault(r.tag, [])
        if r.variant not in variants[r.tag]:
            variants[r.tag].append(r.variant)
    held_variant = {}
    for tag, vs in variants.items():
        if len(vs) >= 2 and post_bucket(tag, "val-char") < VAL_CHAR_FRAC:
            held_variant[tag] = min(vs, key=lambda v: post_bucket(f"{tag}/{v}", "val-variant"))
    out = []
    for r in rows:
        if r.tag not in keep and post_bucket(r.tag, "heldout-char") < HELDOUT_CHAR_FRAC:
            out.append("heldout_char")
        elif held_variant.get(r.tag) == r.variant:
            out.append("val_variant")
        else:
            out.append("train")
    return out
