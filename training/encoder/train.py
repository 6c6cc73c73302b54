"""Step 2: train the encoder (metric learning + self-supervised learning on the unlabeled faces, jointly).

    python -m training.encoder.train training/encoder/configs/xl.toml   # one run: one committed config

Each step takes a P x K batch of labeled training faces (classes drawn with probability ~ sqrt(count))
and a batch of unlabeled faces, two augmented views of each (colour jitter, greyscale, geometry with
scale jitter, blur/low-res, line-art swap). Losses:
  * supervised contrastive (SupCon, Khosla et al. 2020) over all views on a projection head; an unlabeled
    image is its own class, so for it this is SimCLR (its colour view and line-art view must agree);
  * CosFace (large-margin cosine softmax) on the embedding for the labeled views.
Faces from the 'calib' and 'val' splits and the held-out characters are never used here.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.common import load_config, seeded
from training.encoder.augment import ROT_DEG, eval_views, make_views
from training.encoder.data import OUT, load_meta
from training.encoder.export import load_encoder
from training.encoder.model import DEPTHS, Encoder, Projector


def supcon(z: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.T / tau
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, -1e9)
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    return -((logp * pos).sum(1) / pos.sum(1).clamp(min=1)).mean()


class CosFace(torch.nn.Module):
    def __init__(self, dim: int, classes: int, s: float = 24.0, m: float = 0.25) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.s, self.m = s, m

    def forward(self, e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(e.float(), dim=1) @ F.normalize(self.w, dim=1).T
        cos = cos - self.m * F.one_hot(y, cos.shape[1])
        return F.cross_entropy(self.s * cos, y)


@torch.no_grad()
def embed(model: Encoder, imgs: np.ndarray, size: int, flip: bool = True, bs: int = 256) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device  # a GPU when the trainer was given one
    out = []
    for i in range(0, len(imgs), bs):
        x = eval_views(imgs[i:i + bs], size).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            e = F.normalize(model(x).float(), dim=1)
            if flip:
                e = e + F.normalize(model(torch.flip(x, dims=[3])).float(), dim=1)
        out.append(F.normalize(e, dim=1).cpu().numpy())
    model.train()
    return np.concatenate(out)


def known_proto_top1(emb: np.ndarray, y: np.ndarray, protos: np.ndarray, excluded: list[int]) -> float:
    """Top-1 of nearest prototype (dot product) over the classes not in `excluded` (the held-out characters are
    not in the gallery). Excluded classes are masked in the scores: a constant prototype row would not do, as
    its dot product with an embedding can be anything."""
    scores = emb @ protos.T
    scores[:, excluded] = -np.inf
    return float((np.argmax(scores, 1) == y).mean())


def quick_eval(model, faces, meta, size, heldout_ids, rng) -> dict:
    """Prototype accuracy on val for training characters; 10-shot open-set top-1 for held-out ones
    (one embedding pass over all faces, no flip: cheap enough to run during training)."""
    lab = np.array(meta["label"])
    split = np.array(meta["split"])
    emb = embed(model, faces, size, flip=False)
    tr = split == "train"
    va = split == "val"
    nc = len(meta["characters"])
    protos = np.stack([emb[tr & (lab == c)].mean(0) for c in range(nc)])
    known = va & ~np.isin(lab, heldout_ids)
    res = {"known_proto_top1": known_proto_top1(emb[known], lab[known], protos, heldout_ids)}
    if len(heldout_ids):
        accs = []
        for _ in range(5):
            p = protos.copy()
            q, qy = [], []
            for c in heldout_ids:
                idx = np.where(lab == c)[0]
                shots = rng.choice(idx, 10, replace=False)
                p[c] = emb[shots].mean(0)
                rest = np.setdiff1d(idx, shots)
                q.append(rest)
                qy.append(np.full(len(rest), c))
            q = np.concatenate(q)
            accs.append((np.argmax(emb[q] @ p.T, 1) == np.concatenate(qy)).mean())
        res["heldout10_top1"] = float(np.mean(accs))
    return res


def identity_means(model: Encoder, imgs: np.ndarray, ident: np.ndarray, tr: np.ndarray, ids: list[int],
                   size: int) -> np.ndarray:
    """(len(ids), dim) unit mean embedding of the pictures `tr` of each identity in `ids` (sorted; pictures of other
    identities are left out): CosFace proxies for a warm start, so fine-tuning starts from a consistent head rather
    than a random one."""
    tr = tr[np.isin(ident[tr], ids)]
    e = embed(model, imgs[tr], size, flip=False)
    pos = np.searchsorted(ids, ident[tr])
    means = np.zeros((len(ids), e.shape[1]), np.float32)
    np.add.at(means, pos, e)
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def init_from(model: Encoder, cosface: CosFace, run: str, heldout: list[str], faces: np.ndarray, lab: np.ndarray,
              split: np.ndarray, train_ids: list[int], size: int) -> None:
    """Load run `run`'s encoder into `model` (same dim and held-out characters) and set the CosFace class
    weights to the normalised class means of its 'train' embeddings at the new `size`, so fine-tuning starts
    from a consistent head rather than a random one."""
    base, ck = load_encoder(run)
    if ck["dim"] != model.dim or list(ck["heldout"]) != list(heldout) or base.depths != model.depths:
        raise SystemExit(f"--init {run}: dim {ck['dim']} / depths {base.depths} / held-out {ck['heldout']} differ "
                         "from this run's")
    model.load_state_dict(base.state_dict())
    protos = identity_means(model, faces, lab, np.where(split == "train")[0], train_ids, size)
    with torch.no_grad():
        cosface.w.copy_(torch.from_numpy(protos))
    print(f"initialised from {run} ({ck['steps_done']} steps at {ck['size']} px); CosFace from prototypes", flush=True)


@dataclass(frozen=True)
class Config:
    """One run of the closed encoder. The defaults are the first member of the shipped ensemble (`xl`);
    training/encoder/configs/ holds one file per run of the shipped graph."""

    run: str = "xl"
    heldout: str = "default"  # 'default' (the 6 characters of data.HELDOUT) or 'none'
    steps: int = 14000
    size: int = 64
    dim: int = 128
    depths: tuple = DEPTHS  # basic blocks per stage (widths 32-64-128-256)
    p: int = 12  # classes per batch
    k: int = 4  # images per class
    unlabeled: int = 0  # unlabeled images per batch (0 = no SSL)
    p_line: float = 0.25
    rot: float = ROT_DEG  # rotation augmentation: uniform in +-rot degrees
    lr: float = 3e-3
    wd: float = 0.05
    tau: float = 0.1
    cosface: float = 1.0  # weight of the CosFace loss
    supcon: float = 1.0  # weight of the SupCon/SimCLR loss
    cf_s: float = 16.0
    cf_m: float = 0.15
    fp32: bool = False  # no bf16 autocast
    threads: int = 1
    eval_every: int = 300
    max_minutes: float = 95.0  # safety stop (0 = none); records steps done
    seed: int = 1
    init: str = ""  # start from this run's encoder (fine-tuning, e.g. at another size); CosFace from its prototypes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="a run's TOML file, e.g. training/encoder/configs/xl.toml")
    cfg = load_config(Config, ap.parse_args().config)

    rng, g = seeded(cfg.threads, cfg.seed)
    run_dir = OUT / cfg.run
    run_dir.mkdir(parents=True, exist_ok=True)

    meta = load_meta()
    faces = np.load(OUT / "faces_96.npy")
    lines = np.load(OUT / "faces_lineart_96.npy")
    unl = np.load(OUT / "unlabeled_96.npy") if cfg.unlabeled else None
    unl_lines = np.load(OUT / "unlabeled_lineart_96.npy") if cfg.unlabeled else None
    chars = meta["characters"]
    heldout = [] if cfg.heldout == "none" else list(meta["heldout"])
    heldout_ids = [chars.index(c) for c in heldout]
    lab = np.array(meta["label"])
    split = np.array(meta["split"])
    train_ids = sorted(set(range(len(chars))) - set(heldout_ids))
    remap = {c: i for i, c in enumerate(train_ids)}
    by_class = {c: np.where((lab == c) & (split == "train"))[0] for c in train_ids}
    counts = np.array([len(by_class[c]) for c in train_ids], float)
    cls_p = np.sqrt(counts) / np.sqrt(counts).sum()
    print(f"training on {len(train_ids)} characters, {int(counts.sum())} faces; held out: {heldout}")

    depths = tuple(int(d) for d in cfg.depths)
    model = Encoder(depths=depths, dim=cfg.dim)
    proj = Projector(cfg.dim)
    cosface = CosFace(cfg.dim, len(train_ids), s=cfg.cf_s, m=cfg.cf_m)
    if cfg.init:
        init_from(model, cosface, cfg.init, heldout, faces, lab, split, train_ids, cfg.size)
    params = list(model.parameters()) + list(proj.parameters()) + list(cosface.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.wd)
    warm = max(1, cfg.steps // 20)

    def lr_at(step):
        """Warm-up, then cosine to 0. Progress is steps done or, with --max-minutes, time used, whichever is
        further, so a slow (shared) machine still ends the schedule annealed."""
        if step < warm:
            return cfg.lr * (step + 1) / warm
        prog = (step - warm) / max(1, cfg.steps - warm)
        if cfg.max_minutes:
            prog = max(prog, (time.time() - t0) / (cfg.max_minutes * 60))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    history = {"args": {**asdict(cfg), "depths": ",".join(map(str, depths))}, "step": [], "loss": [], "supcon": [],
               "cosface": [], "eval": []}
    t0 = time.time()
    done = 0
    bar = tqdm(range(cfg.steps), desc=cfg.run, mininterval=10)
    for step in bar:
        cls = rng.choice(train_ids, size=cfg.p, replace=False, p=cls_p)
        idx = np.concatenate([rng.choice(by_class[c], cfg.k, replace=len(by_class[c]) < cfg.k) for c in cls])
        y = torch.tensor([remap[int(c)] for c in lab[idx]])
        views = [make_views(faces[idx], lines[idx], cfg.size, g, cfg.p_line, cfg.rot) for _ in range(2)]
        labels = [y, y]
        ys = [y, y]
        if cfg.unlabeled:
            uidx = rng.choice(len(unl), cfg.unlabeled, replace=False)
            uy = torch.arange(cfg.unlabeled) + 10_000
            views += [make_views(unl[uidx], unl_lines[uidx], cfg.size, g, cfg.p_line, cfg.rot) for _ in range(2)]
            labels += [uy, uy]
        x = torch.cat(views)
        lbl = torch.cat(labels)
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not cfg.fp32):
            e = model(x)
            z = proj(e)
        nl = 2 * len(idx)
        l_sup = supcon(z, lbl, cfg.tau)
        l_cf = cosface(e[:nl], torch.cat(ys))
        loss = cfg.supcon * l_sup + cfg.cosface * l_cf
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        history["step"].append(done)
        history["loss"].append(loss.item())
        history["supcon"].append(l_sup.item())
        history["cosface"].append(l_cf.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{float(loss):.3f}", sup=f"{float(l_sup):.3f}", cf=f"{float(l_cf):.3f}")
        last = done == cfg.steps or (cfg.max_minutes and time.time() - t0 > cfg.max_minutes * 60)
        if (cfg.eval_every and done % cfg.eval_every == 0) or last:
            ev = quick_eval(model, faces, meta, cfg.size, heldout_ids, np.random.default_rng(1))
            ev["step"] = done
            ev["minutes"] = round((time.time() - t0) / 60, 2)
            history["eval"].append(ev)
            print(json.dumps(ev), flush=True)
            torch.save({"state_dict": model.state_dict(), "dim": cfg.dim, "depths": list(depths), "size": cfg.size, "steps_done": done,
                        "heldout": heldout, "characters": chars, "init": cfg.init}, run_dir / "encoder.pt")
            (run_dir / "history.json").write_text(json.dumps(history))
        if last:
            break
    history["minutes"] = round((time.time() - t0) / 60, 2)
    history["steps_done"] = done
    (run_dir / "history.json").write_text(json.dumps(history))
    print(f"done {done} steps in {history['minutes']} min -> {run_dir / 'encoder.pt'}")


if __name__ == "__main__":
    main()
