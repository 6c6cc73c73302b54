"""Train the head detector, export ONNX (decoding inside), write the manifest's detector section.

    python -m training.detector.train training/detector/configs/v13a.toml    # one run: one committed config

A config (the `Config` fields below) names the run (its checkpoint runs/detector/<run>.pt), the run it continues
(`init`), the time budget, the input sizes and the hard negatives; `ship = true` also calibrates it into models/.
The shipped detector is a chain of such runs: `python -m training.detector.recipe` runs them in order.
Needs runs/detector/teacher_raw.json (python -m training.detector.label) and, for pasted crops,
runs/detector/paste_box.json (python -m training.detector.paste_box).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from training.common import load_config
from training.detector.checked import training_paths
from training.detector.common import RUNS
from training.detector.data import DECOYS, MOTIFS, SIZE, Sampler, load_crops, load_scenes, train_paths
from training.detector.model import STRIDES, HeadNet, level_centres

# a head of side s (sqrt of area, model pixels) is a target on level k when LO[k] <= s < HI[k]
LEVEL_LO = (0, 40, 96)
LEVEL_HI = (80, 176, 1e9)


def targets(boxes: np.ndarray, ignore: np.ndarray, size: int = SIZE):
    """Per level: heat (n*n,), cls weight (n*n,), reg target boxes (n*n, 4), reg weight (n*n,)."""
    out = []
    for k, s in enumerate(STRIDES):
        n = size // s
        cx = (np.arange(n) + 0.5) * s
        gx, gy = np.meshgrid(cx, cx)
        gx, gy = gx.reshape(-1), gy.reshape(-1)
        heat = np.zeros(n * n, np.float32)
        best = np.zeros(n * n, np.float32)
        reg = np.zeros((n * n, 4), np.float32)
        regw = np.zeros(n * n, np.float32)
        for b in boxes:
            w, h = b[2] - b[0], b[3] - b[1]
            side = math.sqrt(max(w * h, 1e-6))
            if not (LEVEL_LO[k] <= side < LEVEL_HI[k]):
                continue
            bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            sx, sy = max(0.5 * s, w / 6), max(0.5 * s, h / 6)
            g = np.exp(-((gx - bx) ** 2 / (2 * sx**2) + (gy - by) ** 2 / (2 * sy**2)))
            ci = min(n - 1, max(0, int(by // s))) * n + min(n - 1, max(0, int(bx // s)))
            g[ci] = 1.0
            heat = np.maximum(heat, g)
            inside = (gx > b[0]) & (gx < b[2]) & (gy > b[1]) & (gy < b[3])
            m = (g >= 0.3) & inside & (g > best)
            m[ci] = True
            reg[m] = b
            regw[m] = g[m]
            best = np.where(m, g, best)
        clsw = np.ones(n * n, np.float32)
        for b in ignore:
            inside = (gx >= b[0]) & (gx <= b[2]) & (gy >= b[1]) & (gy <= b[3])
            clsw[inside & (heat < 0.5)] = 0.0
        out.append((heat, clsw, reg, regw))
    return out


def batch_targets(items, size: int = SIZE):
    levels = []
    per = [targets(b, i, size) for _, b, i in items]
    for k in range(len(STRIDES)):
        levels.append(tuple(torch.from_numpy(np.stack([p[k][j] for p in per])) for j in range(4)))
    return levels


def focal(logits: torch.Tensor, heat: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 0.999
    lp = -((1 - p) ** 2) * torch.log(p) * pos
    ln = -((1 - heat) ** 4) * p**2 * torch.log(1 - p) * (~pos) * w
    return (lp.sum() + ln.sum()), pos.sum()


def giou_loss(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    ix1, iy1 = torch.max(pred[:, 0], tgt[:, 0]), torch.max(pred[:, 1], tgt[:, 1])
    ix2, iy2 = torch.min(pred[:, 2], tgt[:, 2]), torch.min(pred[:, 3], tgt[:, 3])
    inter = (ix2 - ix1).clamp(0) * (iy2 - iy1).clamp(0)
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    at = (tgt[:, 2] - tgt[:, 0]) * (tgt[:, 3] - tgt[:, 1])
    union = ap + at - inter + 1e-6
    cx1, cy1 = torch.min(pred[:, 0], tgt[:, 0]), torch.min(pred[:, 1], tgt[:, 1])
    cx2, cy2 = torch.max(pred[:, 2], tgt[:, 2]), torch.max(pred[:, 3], tgt[:, 3])
    carea = (cx2 - cx1) * (cy2 - cy1) + 1e-6
    return 1 - inter / union + (carea - union) / carea


def loss_fn(outs, levels):
    cls_sum, npos, reg_sum, reg_w = 0.0, 0, 0.0, 0.0
    for (cls, reg), (heat, clsw, rt, rw), s in zip(outs, levels, STRIDES):
        c = level_centres(cls, s)  # the same cell centres as the exported decoding
        b = cls.shape[0]
        lc, n = focal(cls.reshape(b, -1), heat, clsw)
        cls_sum, npos = cls_sum + lc, npos + n
        m = rw > 0
        if m.any():
            d = torch.exp(reg.clamp(-6, 6)).reshape(b, 4, -1).transpose(1, 2) * s
            cc = c[None].expand(b, -1, -1)
            pb = torch.cat([cc - d[..., :2], cc + d[..., 2:]], -1)[m]
            reg_sum = reg_sum + (giou_loss(pb, rt[m]) * rw[m]).sum()
            reg_w = reg_w + rw[m].sum()
    npos = max(1, int(npos))
    lc = cls_sum / npos
    lr = reg_sum / max(1e-6, float(reg_w)) if reg_w else torch.zeros(())
    return lc + 2.0 * lr, float(lc.detach()), float(lr.detach())


def export(net: HeadNet, path: Path, flip: bool = False, size: int = SIZE, mirror_net: HeadNet | None = None) -> None:
    """The graph is fully convolutional: it can be exported (and served) at another input size. `mirror_net`:
    the mirror pass runs that second net (`model.flip_average`)."""
    from training.detector.model import Exportable

    net.eval()
    model = Exportable(net, flip=flip, mirror_net=mirror_net).eval()  # (the exporter restores the wrapper's mode after)
    x = torch.zeros(1, 3, size, size)
    # height and width stay symbolic (the decoding follows the input's shape): the manifest's input size is the
    # one served; the size the graph was made for is kept in its metadata (`input_size`)
    torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["boxes"], opset_version=17,
                      dynamic_axes={"images": {2: "height", 3: "width"}}, dynamo=False)
    import onnx

    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, {"input_size": str(size)})
    onnx.save(m, str(path))


@dataclass(frozen=True)
class Config:
    """One detector run; the defaults are v13a, the run the shipped graph reads the picture with
    (training/detector/configs/ holds one file per run of the recipe, `training.detector.recipe` runs them)."""

    run: str = "v13a"  # the checkpoint: runs/detector/<run>.pt (and .onnx)
    init: str = "v12b"  # the run it continues ("" = from scratch)
    minutes: float = 60.0  # the time budget: training stops there, whatever the step count
    batch: int = 16
    lr: float = 6e-4
    seed: int = 51
    # training input sizes, one drawn per batch (multiples of 32): the net is fully convolutional and can then be
    # served at any of them (ship --sizes chooses)
    sizes: tuple = (320, 384, 416)
    motifs: float = 0.5  # probability per sample of a pattern of small motifs (stars, paws, hearts...) as negatives
    decoys: bool = True  # add face-like motifs (bows, skulls, plush-animal faces, badges) to the motif patterns
    ship: bool = False  # export, calibrate and copy into models/ after training (the recipe ships in its own stage)

    @property
    def out(self) -> Path:
        return RUNS / f"{self.run}.pt"

    @property
    def init_path(self) -> Path | None:
        return RUNS / f"{self.init}.pt" if self.init else None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="train the head detector (see docs/experiments/detector.md)")
    ap.add_argument("config", help="a run's TOML file, e.g. training/detector/configs/v13a.toml")
    return ap


def main() -> None:
    a = load_config(Config, parser().parse_args().config)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    scenes = load_scenes(training_paths(train_paths()))
    crops = load_crops()
    print(f"{len(scenes)} train scenes, {sum(len(s['boxes']) for s in scenes)} heads, {len(crops)} crops, "
          f"loaded in {time.time() - t0:.0f}s", flush=True)
    sizes = [int(z) for z in a.sizes]
    kinds = MOTIFS + DECOYS if a.decoys else MOTIFS
    samplers = {z: Sampler(scenes, crops, seed=a.seed + k, size=z, p_motifs=a.motifs, motif_kinds=kinds)
                for k, z in enumerate(sizes)}
    pick = random.Random(a.seed)
    net = HeadNet()
    if a.init_path is not None:
        net.load_state_dict(torch.load(a.init_path, weights_only=True))
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=5e-4)
    budget = a.minutes * 60
    t0 = time.time()
    it, ema = 0, None
    mean = torch.zeros(1, 3, 1, 1)
    while True:
        el = time.time() - t0
        if el >= budget:
            break
        frac = el / budget
        lr = a.lr * min(1.0, (it + 1) / 100) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        size = pick.choice(sizes)
        items = [samplers[size].sample() for _ in range(a.batch)]
        x = torch.from_numpy(np.stack([i[0] for i in items])).permute(0, 3, 1, 2).float() / 255.0 - mean
        levels = batch_targets(items, size)
        net.train()
        outs = net(x)
        loss, lc, lr_ = loss_fn(outs, levels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        ema = (lc, lr_) if ema is None else (0.98 * ema[0] + 0.02 * lc, 0.98 * ema[1] + 0.02 * lr_)
        it += 1
        if it % 25 == 0:
            print(f"it {it} {el / 60:.1f}/{a.minutes:.0f} min lr {lr:.2e} cls {ema[0]:.3f} reg {ema[1]:.3f} "
                  f"({el / it:.2f} s/it)", flush=True)
        if it % 200 == 0:
            torch.save(net.state_dict(), a.out)
    torch.save(net.state_dict(), a.out)
    onnx_path = Path(a.out).with_suffix(".onnx")
    export(net, onnx_path)
    print(f"saved {a.out} and {onnx_path} after {it} iterations", flush=True)
    if a.ship:
        from training.detector.ship import choose_size, ship

        size, extra, calib = choose_size(onnx_path, sizes) if len(sizes) > 1 else (None, {}, None)
        ship(onnx_path, extra=extra, size=size, calib=calib)


if __name__ == "__main__":
    main()
