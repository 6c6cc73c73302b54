"""Stage 3 of the pretrained encoder: train the embedding head on the frozen backbone's cached features.

    python -m training.general.head training/general/configs/head/lite0h.toml

Reads `runs/general/taps_<size>.npz` (stage 2) and trains `backbone.Encoder.proj` (the taps named by the config, a
linear map to `dim`) with CosFace over the training identities and a supervised contrastive loss on pairs: two
pictures of one character where it has two or more (a cross-outfit or cross-artist positive), else a picture and its
mirror. The head starts from the whitened projection (PCA, then the within-character spread), so step 0 is the
frozen number. Writes `runs/general/<run>/head.pt` (resumable: steps done, optimiser state) and `history.json`
(the numbers every `eval_every` steps: unseen outfits, the fan-art proxy, faces/ 'val'), and at the end
`embeddings.npy`, every cached crop's embedding.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.common import load_config
from training.general import dataset
from training.general.evaluate import numbers
from training.general.features import tap_columns, taps_file, whitening
from training.general.train import supcon


@dataclass(frozen=True)
class Config:
    run: str = "lite0h"
    backbone: str = "lite0"  # the family whose cached taps it reads (training.general.features --backbone)
    size: int = 128
    taps: tuple[str, ...] = ("s5", "s6", "s7", "head")
    dim: int = 256
    steps: int = 3000
    batch: int = 256  # identities per step, two views each
    lr: float = 1e-3
    wd: float = 1e-4
    cf_s: float = 24.0
    cf_m: float = 0.2
    tau: float = 0.1
    supcon: float = 1.0
    feature_dropout: float = 0.1
    multi_weight: float = 4.0  # how much more often a character with two or more pictures is drawn
    eval_every: int = 500
    seed: int = 0

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return load_config(cls, path)


def cached_taps(backbone: str, taps: tuple[str, ...], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(plain, mirror) pooled taps of every cached crop, from stage 2's file."""
    z = np.load(taps_file(backbone, size))
    cols = tap_columns(taps, backbone)
    return z["plain"][:, cols].astype(np.float32), z["flip"][:, cols].astype(np.float32)


def whitened_head(both: np.ndarray, data, dim: int) -> torch.nn.Linear:
    """The linear head that whitens: PCA of the training pictures' pooled taps to `dim`, then the within-character
    spread (features.whitening), as one Linear (its `mean` kept as an attribute)."""
    tr = np.where(data.train)[0]
    mu, w = whitening(both[tr], data.identity[tr], dim)
    proj = torch.nn.Linear(both.shape[1], w.shape[1])
    with torch.no_grad():
        proj.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))
        proj.bias.copy_(torch.from_numpy(-(mu @ w).astype(np.float32)))
    proj.mean = mu
    return proj


def embed(proj: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return F.normalize(proj(torch.from_numpy(x)), dim=1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    cfg = Config.load(ap.parse_args().config)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(cfg.seed)
    out = dataset.OUT / cfg.run
    out.mkdir(parents=True, exist_ok=True)
    data = dataset.load(size=cfg.size)
    plain, flip = cached_taps(cfg.backbone, tuple(cfg.taps), cfg.size)
    both = (plain + flip) / 2  # what serving embeds: the crop and its mirror (encoder.tta_flip)
    tr = np.where(data.train)[0]
    proj = whitened_head(both, data, cfg.dim)
    mu = proj.mean
    ids = np.unique(data.identity[tr])
    col = {int(i): j for j, i in enumerate(ids)}
    y_all = np.array([col.get(int(i), -1) for i in data.identity])
    members = [tr[y_all[tr] == j] for j in range(len(ids))]
    counts = np.array([len(m) for m in members])
    p_id = np.where(counts >= 2, cfg.multi_weight, 1.0)
    p_id /= p_id.sum()
    # CosFace prototypes start at the identities' mean embeddings
    e0 = embed(proj, both[tr])
    protos = np.zeros((len(ids), cfg.dim), np.float32)
    np.add.at(protos, y_all[tr], e0)
    cosface = torch.nn.Parameter(F.normalize(torch.from_numpy(protos), dim=1))
    opt = torch.optim.AdamW([*proj.parameters(), cosface], lr=cfg.lr, weight_decay=cfg.wd)
    start, history = 0, []
    ck_path = out / "head.pt"
    if ck_path.exists():
        ck = torch.load(ck_path, weights_only=False)
        proj.load_state_dict(ck["proj"])
        cosface.data.copy_(ck["cosface"])
        opt.load_state_dict(ck["opt"])
        start, history = ck["steps"], ck["history"]
        print(f"resumed {cfg.run} at step {start}", flush=True)

    def evaluate(step: int) -> None:
        n = numbers(embed(proj, both), data)
        row = {"step": step, **{k: (v["top1"], v["top3"]) for k, v in n.items() if isinstance(v, dict)}}
        history.append(row)
        print(json.dumps(row), flush=True)

    def save(step: int) -> None:
        torch.save({"proj": proj.state_dict(), "cosface": cosface.data, "opt": opt.state_dict(), "steps": step,
                    "history": history, "config": asdict(cfg), "taps": cfg.taps, "mean": mu}, ck_path)
        (out / "history.json").write_text(json.dumps(history, indent=0))

    if start == 0:
        evaluate(0)
    t0 = time.time()
    for step in range(start, cfg.steps):
        lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        who = rng.choice(len(ids), cfg.batch, replace=False, p=p_id)
        a, b = [], []
        for j in who:
            m = members[j]
            if len(m) >= 2:
                i1, i2 = rng.choice(m, 2, replace=False)
            else:
                i1 = i2 = m[0]
            a.append(plain[i1] if rng.random() < 0.5 else flip[i1])
            b.append(flip[i2] if i1 == i2 or rng.random() < 0.5 else plain[i2])
        x = torch.from_numpy(np.stack(a + b))
        x = F.dropout(x, cfg.feature_dropout, training=True)
        yb = torch.from_numpy(np.concatenate([who, who]))
        e = F.normalize(proj(x), dim=1)
        logits = e @ F.normalize(cosface, dim=1).T
        logits = cfg.cf_s * (logits - cfg.cf_m * F.one_hot(yb, len(ids)))
        loss = F.cross_entropy(logits, yb) + cfg.supcon * supcon(e, yb, cfg.tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = step + 1
        if done % 100 == 0:
            print(f"step {done} loss {loss.item():.3f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if done % cfg.eval_every == 0 or done == cfg.steps:
            evaluate(done)
            save(done)
    save(cfg.steps)
    # every crop's embedding as the served graph gives it (the bundle builder checks a sample through ONNX)
    np.save(out / "embeddings.npy", embed(proj, both).astype(np.float32))


if __name__ == "__main__":
    main()
