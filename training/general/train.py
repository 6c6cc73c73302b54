"""Stage 2: train the general encoder from a committed config.

    python -m training.general.train training/general/configs/g64.toml

Identities are every character of ../shared/data/characters (merged tags, see labels.py) plus the faces/
characters, except the pictures of the validation splits (split.py) and the faces/ of the characters that also
have a MyAnimeList portrait (the fan-art proxy: they must be known from their portrait alone). Each step draws
P identities (faces/ characters with weight `faces_weight`, the others 1) and two pictures of each (two
different pictures where it has them, else the same one twice): one augmented view each (geometry, colour, blur,
line-art swap). Losses: CosFace over all identities on the embedding + SupCon on a projection head. A
checkpoint and the validation numbers (evaluate.py's, on the quick path) are written every `eval_every` steps,
so a stopped run loses little: `--resume` goes on from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.common import load_config, seeded
from training.encoder.augment import make_views
from training.encoder.lineart import random_lineart
from training.encoder.model import Encoder, Projector
from training.encoder.train import CosFace, identity_means, supcon
from training.general import dataset
from training.general.evaluate import quick_numbers

OUT = dataset.OUT


@dataclass(frozen=True)
class Config:
    run: str
    size: int = 64
    dim: int = 256
    depths: tuple = (1, 2, 2, 2)
    widths: tuple = (32, 64, 128, 256)
    p: int = 96
    steps: int = 16000
    max_minutes: float = 105.0
    lr: float = 3e-3
    wd: float = 0.05
    tau: float = 0.1
    cf_s: float = 24.0
    cf_m: float = 0.2
    cosface: float = 1.0
    supcon: float = 1.0
    p_line: float = 0.2
    faces_weight: float = 8.0
    # sampling weight of the other identities with two or more training pictures (outfits, cards, portraits merged
    # into a game character): the only ones whose two views are two different pictures, i.e. the only
    # outfit-to-outfit positives; 1 = drawn like the one-picture identities (g64); the shipped g64m draws them 4x
    multi_weight: float = 4.0
    threads: int = 2
    eval_every: int = 1000
    seed: int = 0
    init: str = ""  # a finished run to start from (weights only: a fresh optimiser and schedule)
    # unlabeled/ face crops per step (runs/encoder/unlabeled_96.npy), two views each, each its own instance in the
    # SupCon term only (SimCLR): more identities to tell apart than the labeled ones; 0 = none
    unlabeled: int = 0
    # share of a step's identities drawn from one work (a game, or an anime where the label says which), the work
    # drawn with probability growing as the square root of its identities: characters of one work share one art
    # style, so these are the negatives that only the character tells apart; 0 = every identity drawn alone
    same_work: float = 0.0
    # the pretrained encoder (training/general/backbone.py): "" = the from-scratch one above (depths, widths);
    # "lite0" = EfficientNet-Lite0 with ImageNet weights (runs/third_party, see backbone.py), "mnv2" = nsfwjs's
    # MobileNetV2 1.4 (runs/third_party/nsfwjs, see mobilenet.py); its stages up to
    # `freeze` kept as they are (weights and batch-norm statistics), its `taps` pooled into the embedding
    backbone: str = ""
    taps: tuple = ("s5", "s6")
    freeze: str = "s4"
    # the embedding head's start: a head run (training/general/head.py) whose trained projection it takes, or
    # "whitened" (the frozen features' whitened projection: the head runs' step 0, which read better than their end)
    head_init: str = ""
    crops: int = 96  # which cached crops: runs/general/chars_<crops>.npy (and faces_<crops>.npy)
    # the views' zoom: the crop side relative to the picture's (augment.random_geometry); below 1 cuts a tight face
    # out of a head crop, above 1 frames a tight face wider, as the two framings of the data (faces/ tight crops,
    # the detector's head crops) differ
    zoom: tuple = (0.72, 1.18)
    # identities whose training pictures come from two or more sources (official game art and fan art, a
    # MyAnimeList portrait and a game's, ...): the cross-style positives. `cross_weight` their sampling weight (0: as
    # any identity with two pictures, `multi_weight`); `cross_pairs` draws their two pictures from two sources
    cross_weight: float = 0.0
    cross_pairs: bool = False
    # the share of colour views drawn in another style (augment.random_style: flat cel shading, soft painted
    # shading, inked edges, gamma): a portrait's flat anime colours and fan art's painted ones; 0 = none
    p_style: float = 0.0

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return load_config(cls, path)


def works(labels: list, ids: list[int], min_identities: int = 8) -> dict[str, np.ndarray]:
    """The works (a label's `series`) with at least `min_identities` of the training identities `ids`: the groups
    `draw` takes its same-work share from. Labels with no work (most MyAnimeList portraits) are in none."""
    out: dict[str, list[int]] = {}
    for c in ids:
        if labels[c].series:
            out.setdefault(labels[c].series, []).append(c)
    return {w: np.array(v) for w, v in sorted(out.items()) if len(v) >= min_identities}


def draw(rng: np.random.Generator, ids: list[int], id_p: np.ndarray, p: int, groups: dict[str, np.ndarray],
         share: float) -> np.ndarray:
    """`p` distinct identities for one step: round(`share` x p) of them (at most the work's size) from one work of
    `groups`, chosen with probability ~ sqrt(its size), by their weights in `id_p`; the rest from all identities
    by `id_p`."""
    n = int(round(share * p)) if groups else 0
    if n <= 0:
        return rng.choice(ids, size=p, replace=False, p=id_p)
    names = list(groups)
    size = np.array([len(groups[w]) for w in names], float)
    members = groups[names[rng.choice(len(names), p=np.sqrt(size) / np.sqrt(size).sum())]]
    pos = np.searchsorted(ids, members)
    wm = id_p[pos] / id_p[pos].sum()
    first = rng.choice(members, size=min(n, len(members)), replace=False, p=wm)
    rest_p = id_p.copy()
    rest_p[np.searchsorted(ids, first)] = 0.0
    rest = rng.choice(ids, size=p - len(first), replace=False, p=rest_p / rest_p.sum())
    return np.concatenate([first, rest])


def lineart(imgs: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([random_lineart(im, rng)[:, :, 0] for im in tqdm(imgs, desc="line art", mininterval=10)])[:, None]


CANDIDATES = Path(__file__).resolve().parent / "candidates"


def compact(run_dir: Path, dest: Path) -> Path:
    """A run's checkpoint as a session commits it to be continued in the next: weights, heads and CosFace rows in
    float16, the step reached, config and identities, and its history; no optimiser moments."""
    ck = torch.load(run_dir / "encoder.pt", map_location="cpu", weights_only=False)

    def half(sd: dict) -> dict:
        return {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}

    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "checkpoint.pt"
    torch.save({"state_dict": half(ck["state_dict"]), "proj": half(ck["proj"]), "cosface": half(ck["cosface"]),
                "steps_done": ck["steps_done"], "config": ck["config"], "identities": ck["identities"]}, out)
    shutil.copy2(run_dir / "history.json", dest / "history.json")
    print(f"{out}: step {ck['steps_done']}, {out.stat().st_size / 1e6:.1f} MB")
    return out


def pretrained_model(cfg: Config, data, head: bool = True):
    """The pretrained encoder of `cfg.backbone`, frozen up to `cfg.freeze`, its embedding head from `cfg.head_init`
    (or fresh)."""
    from training.general.backbone import Encoder as Pretrained
    from training.general.backbone import load_family
    from training.general.features import FETCHED

    if cfg.backbone not in FETCHED:
        raise SystemExit(f"unknown backbone {cfg.backbone!r}")
    model = load_family(Pretrained(tuple(cfg.taps), cfg.dim, cfg.backbone), FETCHED[cfg.backbone])
    if not head:  # resumed: the checkpoint holds the head
        pass
    elif cfg.head_init == "whitened":  # the frozen features' whitened projection (head.py's step 0)
        from training.general.head import cached_taps, whitened_head

        plain, flip = cached_taps(cfg.backbone, tuple(cfg.taps), cfg.size)
        model.proj.load_state_dict(whitened_head((plain + flip) / 2, data, cfg.dim).state_dict())
    elif cfg.head_init:
        ck = torch.load(OUT / cfg.head_init / "head.pt", map_location="cpu", weights_only=False)
        if tuple(ck["taps"]) != tuple(cfg.taps):
            raise SystemExit(f"head run {cfg.head_init} taps {ck['taps']}, not {cfg.taps}")
        model.proj.load_state_dict(ck["proj"])
    model.freeze(cfg.freeze)
    return model


def warm_start(ck: dict, model: Encoder, proj: Projector, cosface: CosFace, tags: list[str], means) -> None:
    """Load a finished run's checkpoint `ck` into the model and its heads. CosFace's rows are kept when they are
    this run's identities (`tags`, in order; checkpoints before they were saved: the same count); otherwise the
    identities changed since that run (labels.py) and each row starts at its identity's mean embedding, `means()`."""
    model.load_state_dict(ck["state_dict"])
    proj.load_state_dict(ck["proj"])
    same = ck["identities"] == tags if "identities" in ck else ck["cosface"]["w"].shape == cosface.w.shape
    if same:
        cosface.load_state_dict(ck["cosface"])
    else:
        with torch.no_grad():
            cosface.w.copy_(torch.from_numpy(means()))


def pair(rng: np.random.Generator, pool: np.ndarray, sources: np.ndarray | None) -> np.ndarray:
    """Two training pictures of one identity from `pool`: two different ones where it has them; with `sources`
    (the source of each picture of `pool`, two or more distinct), one from each of two different sources."""
    if sources is None:
        return rng.choice(pool, 2, replace=len(pool) < 2)
    kinds = np.unique(sources)
    a, b = rng.choice(kinds, 2, replace=False)
    return np.array([rng.choice(pool[sources == a]), rng.choice(pool[sources == b])])


def init_checkpoint(run: str) -> dict:
    """A finished run's weights to start from: this machine's `runs/general/RUN/encoder.pt`, else the compact
    checkpoint a session committed (`candidates/RUN/checkpoint.pt`, float16 made float again)."""
    here = OUT / run / "encoder.pt"
    if here.exists():
        return torch.load(here, map_location="cpu", weights_only=False)
    ck = torch.load(CANDIDATES / run / "checkpoint.pt", map_location="cpu", weights_only=False)
    for key in ("state_dict", "proj", "cosface"):
        ck[key] = {k: v.float() if v.is_floating_point() else v for k, v in ck[key].items()}
    return ck


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--compact", action="store_true",
                    help="write the run's last checkpoint compactly into training/general/candidates/RUN and stop")
    args = ap.parse_args()
    cfg = Config.load(args.config)
    if args.compact:
        compact(OUT / cfg.run, CANDIDATES / cfg.run)
        return
    rng, g = seeded(cfg.threads, cfg.seed)
    run_dir = OUT / cfg.run
    run_dir.mkdir(parents=True, exist_ok=True)

    data = dataset.load(size=cfg.crops)
    imgs, ident = data.images, data.identity
    tr = np.where(data.train)[0]
    lines = lineart(imgs, cfg.seed)
    ids = sorted(set(ident[tr].tolist()))
    remap = {c: i for i, c in enumerate(ids)}
    tags = [data.labels[c].tag for c in ids]  # CosFace's rows, saved with each checkpoint
    by_id = {c: [] for c in ids}
    for i in tr:
        by_id[int(ident[i])].append(int(i))
    by_id = {c: np.array(v) for c, v in by_id.items()}
    crossed = {c for c in ids if len(set(data.source[by_id[c]].tolist())) >= 2}
    pair_sources = {c: data.source[by_id[c]] for c in crossed} if cfg.cross_pairs else {}
    w = np.array([cfg.faces_weight if data.is_face_identity[c] else
                  cfg.cross_weight if cfg.cross_weight and c in crossed else
                  cfg.multi_weight if len(by_id[c]) >= 2 else 1.0 for c in ids])
    id_p = w / w.sum()
    groups = works(data.labels, ids) if cfg.same_work > 0 else {}
    if groups:
        print(f"{cfg.same_work:.0%} of each step's identities from one of {len(groups)} works "
              f"({sum(len(v) for v in groups.values())} identities)", flush=True)
    print(f"training on {len(ids)} identities, {len(tr)} pictures ({int(data.is_face_identity[ids].sum())} faces/ "
          f"identities, {int(sum(len(by_id[c]) >= 2 for c in ids))} with 2+ pictures, {len(crossed)} from 2+ sources); val_variant {int(data.val_variant.sum())}, proxy {int(data.proxy_query.sum())}", flush=True)

    unl = unl_lines = None
    if cfg.unlabeled:
        unl = np.load(dataset.FACES_CACHE / "unlabeled_96.npy")
        unl_lines = np.load(dataset.FACES_CACHE / "unlabeled_lineart_96.npy")
        print(f"with {cfg.unlabeled} of {len(unl)} unlabeled/ crops per step (SupCon instances)", flush=True)
    ck_path = run_dir / "encoder.pt"
    committed = CANDIDATES / cfg.run / "checkpoint.pt"
    resuming = args.resume and (ck_path.exists() or committed.exists())
    model = pretrained_model(cfg, data, head=not resuming) if cfg.backbone else Encoder(
        widths=cfg.widths, depths=cfg.depths, dim=cfg.dim)
    proj = Projector(cfg.dim)
    cosface = CosFace(cfg.dim, len(ids), s=cfg.cf_s, m=cfg.cf_m)
    # a GPU where there is one (the device machine, one prepared command: docs/experiments/pretrained-encoder.md);
    # the views are made on the CPU either way
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, proj, cosface = model.to(device), proj.to(device), cosface.to(device)
    params = [p for p in model.parameters() if p.requires_grad] + list(proj.parameters()) + list(cosface.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.wd)
    history = {"config": {f.name: getattr(cfg, f.name) for f in fields(cfg)}, "step": [], "loss": [], "eval": [],
               "minutes_before": 0.0}
    start = 0
    if cfg.init and not resuming:
        ck = init_checkpoint(cfg.init)
        warm_start(ck, model, proj, cosface, tags, lambda: identity_means(model, imgs, ident, tr, ids, cfg.size))
        print(f"started from run {cfg.init} ({ck['steps_done']} steps)", flush=True)
    if resuming:
        # this machine's last checkpoint, else the compact one a session committed (no optimiser moments: AdamW
        # starts them again, the schedule goes on from the step it reached)
        here = ck_path.exists()
        ck = torch.load(ck_path if here else committed, map_location="cpu", weights_only=False)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()})
        proj.load_state_dict({k: v.float() for k, v in ck["proj"].items()})
        cosface.load_state_dict({k: v.float() for k, v in ck["cosface"].items()})
        if ck["identities"] != tags:
            raise SystemExit("the identities changed since the checkpoint (labels.py): start a new run from it")
        if here:
            opt.load_state_dict(ck["opt"])
        start = ck["steps_done"]
        history = json.loads(((run_dir if here else committed.parent) / "history.json").read_text())
        history["minutes_before"] = history.get("minutes", 0.0)
        print(f"resumed at step {start} from {'this machine' if here else committed}", flush=True)
    warm = max(1, cfg.steps // 30)
    t0 = time.time() - history["minutes_before"] * 60

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg.lr * (step + 1) / warm
        prog = (step - warm) / max(1, cfg.steps - warm)
        if cfg.max_minutes:
            prog = max(prog, (time.time() - t0) / (cfg.max_minutes * 60))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    def save(done: int) -> None:
        torch.save({"state_dict": model.state_dict(), "proj": proj.state_dict(), "cosface": cosface.state_dict(),
                    "opt": opt.state_dict(), "steps_done": done, "config": history["config"], "identities": tags},
                   ck_path)
        history["minutes"] = round((time.time() - t0) / 60, 2)
        history["steps_done"] = done
        (run_dir / "history.json").write_text(json.dumps(history))

    bar = tqdm(range(start, cfg.steps), desc=cfg.run, mininterval=15, initial=start, total=cfg.steps)
    done = start
    for step in bar:
        cls = draw(rng, ids, id_p, cfg.p, groups, cfg.same_work)
        pick = []
        for c in cls:
            pick.extend(pair(rng, by_id[int(c)], pair_sources.get(int(c))))
        idx = np.array(pick)
        y = torch.tensor([remap[int(c)] for c in ident[idx]])
        x = make_views(imgs[idx], lines[idx], cfg.size, g, cfg.p_line, zoom=cfg.zoom, p_style=cfg.p_style)
        ys = y
        if unl is not None:
            u = rng.choice(len(unl), cfg.unlabeled, replace=False)
            x = torch.cat([x, *(make_views(unl[u], unl_lines[u], cfg.size, g, cfg.p_line, zoom=cfg.zoom, p_style=cfg.p_style) for _ in range(2))])
            uy = torch.arange(cfg.unlabeled) + len(ids)  # one instance class each, past every identity
            ys = torch.cat([y, uy, uy])
        x, y, ys = x.to(device, non_blocking=True), y.to(device), ys.to(device)
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            e = model(x)
            z = proj(e)
        l_sup = supcon(z, ys, cfg.tau)
        l_cf = cosface(e[: len(y)], y)
        loss = cfg.supcon * l_sup + cfg.cosface * l_cf
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        if step % 10 == 0:
            history["step"].append(done)
            history["loss"].append(round(loss.item(), 4))
            bar.set_postfix(loss=f"{loss.item():.3f}", sup=f"{l_sup.item():.3f}", cf=f"{l_cf.item():.3f}")
        last = done == cfg.steps or (cfg.max_minutes and time.time() - t0 > cfg.max_minutes * 60)
        if done % cfg.eval_every == 0 or last:
            ev = quick_numbers(model, data, cfg.size)
            ev.update(step=done, minutes=round((time.time() - t0) / 60, 2))
            history["eval"].append(ev)
            print(json.dumps(ev), flush=True)
            save(done)
        if last:
            break
    save(done)
    print(f"done {done} steps in {history['minutes']} min -> {ck_path}")


if __name__ == "__main__":
    main()
