"""Validation of the general encoder (leave-variant-out, the fan-art proxy, leave-characters-out).

    python -m training.general.evaluate RUN          # the torch checkpoint, prints the numbers
    (the bundle's own numbers are written by `python -m training.general.bundle`)

Every number compares a query with one prototype per known identity (mean of its training pictures' unit
embeddings), over *all* known identities at once (about 7,000):
- `unseen_outfit`: a game character's held-out variant (its other variants known);
- `fanart_proxy`: faces/ pictures (fan art and screenshots) of characters known from one MyAnimeList portrait,
  the portrait being their only training picture;
- `faces_val`: faces/ 'val' pictures of the other faces/ characters.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from training.general.dataset import Data


def prototypes(emb: np.ndarray, data: Data, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(identity ids, unit prototypes) of the identities with pictures in `mask`."""
    ids = np.unique(data.identity[mask])
    order = np.argsort(data.identity[mask], kind="stable")
    ident = data.identity[mask][order]
    e = emb[mask][order]
    starts = np.searchsorted(ident, ids)
    sums = np.add.reduceat(e, starts, axis=0)
    return ids, sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def topk(q: np.ndarray, qy: np.ndarray, ids: np.ndarray, protos: np.ndarray, ks=(1, 3)) -> dict:
    if len(q) == 0:
        return {f"top{k}": None for k in ks} | {"n": 0}
    s = q @ protos.T
    rank = np.argsort(-s, axis=1)[:, : max(ks)]
    hit = ids[rank] == qy[:, None]
    return {f"top{k}": round(float(hit[:, :k].any(1).mean()), 4) for k in ks} | {"n": int(len(q))}


def numbers(emb: np.ndarray, data: Data) -> dict:
    ids, protos = prototypes(emb, data, data.train)
    out = {"known_identities": int(len(ids))}
    for name, mask in (("unseen_outfit", data.val_variant), ("fanart_proxy", data.proxy_query),
                       ("faces_val", data.faces_val)):
        out[name] = topk(emb[mask], data.identity[mask], ids, protos)
    return out


def quick_numbers(model, data: Data, size: int) -> dict:
    from training.encoder.train import embed

    keep = data.train | data.val_variant | data.proxy_query | data.faces_val
    emb = np.zeros((len(data.identity), model.dim), np.float32)
    emb[keep] = embed(model, data.images[keep], size, flip=False)
    n = numbers(emb, data)
    return {k: (v["top1"], v["top3"]) if isinstance(v, dict) else v for k, v in n.items()}


def main() -> None:
    import torch

    from training.encoder.model import Encoder
    from training.encoder.train import embed
    from training.general import dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    args = ap.parse_args()
    ck = torch.load(dataset.OUT / args.run / "encoder.pt", weights_only=False)
    cfg = ck["config"]
    model = Encoder(widths=tuple(cfg["widths"]), depths=tuple(cfg["depths"]), dim=cfg["dim"])
    model.load_state_dict(ck["state_dict"])
    data = dataset.load()
    emb = embed(model, data.images, cfg["size"], flip=True)
    print(json.dumps(numbers(emb, data), indent=1))


if __name__ == "__main__":
    main()
