"""Write docs/experiments/closed-encoder.md, the record of the closed encoder and its classifier (recipe, commands,
metrics, sizes, experiments), and the plots in models/card/ (loss curve, per-character accuracy, confusion matrix).
The model card (models/MODEL_CARD.md) is short and written by hand; it links here.

    python -m training.encoder.card [--run heldout]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.encoder.classifier import gallery_dims, member_saw_heldout, step_widths  # noqa: E402
from training.encoder.data import OUT  # noqa: E402
from training.encoder.model import DEPTHS  # noqa: E402
from training.manifest import MODELS, ROOT  # noqa: E402

RECORD = ROOT / "docs" / "experiments" / "closed-encoder.md"
PLOTS = "../../models/card"  # the plots, as the record links them


def plots(history: dict, ev: dict, card_dir: Path) -> None:
    loss_plot(history, card_dir)
    eval_plots(ev, card_dir)


def loss_plot(history: dict, card_dir: Path) -> None:
    """card/loss.png from a training run's history."""
    card_dir.mkdir(parents=True, exist_ok=True)
    steps = np.array(history["step"])

    def smooth(v, n=20):
        v = np.array(v, float)
        return np.convolve(v, np.ones(n) / n, mode="valid") if len(v) > n else v

    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    for key in ("loss", "supcon", "cosface"):
        s = smooth(history[key])
        ax.plot(steps[len(steps) - len(s):], s, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (20-step mean)")
    ax.set_title("encoder training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(card_dir / "loss.png")
    plt.close(fig)


def eval_plots(ev: dict, card_dir: Path) -> None:
    """card/per_character.png and card/confusion.png from `training.encoder.evaluate`'s eval.json."""
    card_dir.mkdir(parents=True, exist_ok=True)
    chars = ev["characters"]
    acc = np.array([ev["per_character_top1"][c] for c in chars])
    n = np.array(ev["val_counts"])
    fig, ax = plt.subplots(figsize=(6, 6), dpi=80)
    ax.barh(range(len(chars)), acc, color=["tab:orange" if c in ev["metrics"]["open_set"]["heldout"] else "tab:blue"
                                           for c in chars])
    ax.set_yticks(range(len(chars)), [f"{c} ({k})" for c, k in zip(chars, n, strict=True)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("val top-1 (orange: held out of encoder training)")
    ax.set_title("per-character accuracy (val, n in brackets)")
    fig.tight_layout()
    fig.savefig(card_dir / "per_character.png")
    plt.close(fig)

    conf = np.array(ev["confusion"], float)
    conf = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5.5), dpi=80)
    im = ax.imshow(conf, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(chars)), [c[:12] for c in chars], rotation=90, fontsize=5)
    ax.set_yticks(range(len(chars)), [c[:12] for c in chars], fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (val, row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(card_dir / "confusion.png")
    plt.close(fig)


def whiten_text(w: dict | list | None) -> str:
    if not w:
        return ""
    ws = w if isinstance(w, list) else [w]
    span = ", ".join(f"{x['eigenvalue_ratio']:.0e}" for x in ws)
    return (f"""
- **Whitening in the graph** (`export --whiten`): the last step {'of each member ' if len(ws) > 1 else ''}maps its
  embedding e to normalise((e - mean) @ W), PCA whitening (W = V diag(1/sqrt(lambda + r)) V^T, ridge r =
  {ws[0]['ridge']} x the mean eigenvalue) fitted on the encoder's own {ws[0]['faces']:,} training faces. Metric
  learning packs the 26 training identities into a few dominant directions (eigenvalues span {span}); whitening
  gives the remaining directions, which separate characters the encoder never saw, equal weight. It is what
  lifted 10-shot enrolment of unseen characters (see "Experiments and misses"); the classifier is fitted
  on the whitened embeddings.""")


def colour_cmd(c: dict | None) -> str:
    if not c:
        return ""
    bins = " ".join(str(b) for b in c["bins"])
    return f"python -m training.encoder.colour models/encoder.onnx --weight {c['weight']} --bins {bins}   # 3c. colour histogram\n"


def colour_text(c: dict | None, dim: int) -> str:
    if not c:
        return ""
    nb = c["bins"][0] * c["bins"][1] * c["bins"][2]
    return (f"""
- **Colour histogram in the graph** (`training.encoder.colour`): the graph also bins the pixels of its own input
  crop by hue / saturation / value ({' x '.join(str(b) for b in c['bins'])} = {nb} bins, 2x2 pooled, whole crop,
  so a mirror flip does not change it), takes the square root of the counts, L2-normalises, scales by
  {c['weight']} and appends it to the normalised embedding, then normalises the whole again. Hair and eye colour
  are much of a character's identity; the embedding of 26 training characters does not keep them apart on its
  own. No weights: a fixed function of the pixels. The output is {dim}-d.""")


def pooled_cmd(p: dict | None) -> str:
    if not p:
        return ""
    return f"python -m training.encoder.pooled models/encoder.onnx --weight {p['weight']}   # 3d. pooled features\n"


def pooled_text(p: dict | None, dim: int) -> str:
    if not p:
        return ""
    per = p["dims"] // p["members"]
    return (f"""
- **Pooled features in the graph** (`training.encoder.pooled`): each member's global-average-pooled features
  ({per} channels, the input of its linear map to the embedding), of the crop and of its mirror image added,
  L2-normalised, times {p['weight']} / sqrt({p['members']}), are appended too ({p['dims']} dimensions), and the whole
  is normalised again. The linear map after them was trained for metric learning on the 26 characters the
  encoder saw; the classifier over all 32 can use what that map drops. No weights and almost no time: they are
  already computed. The output is {dim}-d.""")


def hires_cmd(h: dict | None, saw_heldout: bool) -> str:
    if not h:
        return ""
    out = "runs/encoder/block/member.onnx"
    every = " --every-character" if saw_heldout else ""
    return (f"python -m training.encoder.export --run {','.join(h['runs'])} --out {out} --flip-tta --whiten\n"
            f"python -m training.encoder.quantize {out}\n"
            f"python -m training.encoder.hires models/encoder.onnx {out}{every} --weight {h['weight']}"
            "   # 3e. classifier-only block\n")


def hires_text(h: dict | None, dim: int, saw_heldout: bool) -> str:
    if not h:
        return ""
    n = len(h["runs"])
    seen = ("trained on **all 32 characters** (`heldout = 'none'` in the config), the 6 held out of the members above included"
            if saw_heldout else "trained without the same 6 characters")
    return (f"""
- **A classifier-only block** (`training.encoder.hires`): {n} more encoder{'s' if n > 1 else ''} ({', '.join(h['runs'])}:
  {' / '.join(f'{s:,}' for s in h.get('steps') or [])} steps, {h['size']} px input), {seen}, exported and quantized
  like the members. Their unit embedding and their unit pooled features, each times {h['weight']}, are appended
  last ({h['dims']} dimensions) and the whole is normalised again. Only the linear classifier sees them: the gallery
  compares the leading embedding as before, and every open-set number below is measured without the block
  (`classifier.open_set_view`), since it has seen the characters those numbers treat as new. The output is
  {dim}-d.""")


def gallery_dims_text(dims: int | None, dim: int) -> str:
    if not dims:
        return ""
    return (f"""
  The cosine compares only the first {dims} of the {dim} dimensions (manifest `gallery_dims`), renormalised: the
  embedding without what the graph appends after it (colour histogram, pooled features), which is too noisy
  in a prototype made from one or two pictures.""")


def serving_rows(sv: dict | None) -> str:
    """Rows for the open set scored as the bot does (linear classifier + gallery); empty for older metrics."""
    if not sv:
        return ""
    return "".join(
        f"| unseen, {k[1:]}-shot, scored as served (linear over the 26 + gallery of the 6): top-1 / top-3 | "
        f"{sv[k]['top1']:.3f} / {sv[k]['top3']:.3f} | |\n" for k in ("k5", "k10")) + (
        f"| known top-1 (the 26) while the 6 are enrolled with 10 shots | {sv['k10']['known_top1_with_gallery']:.3f} | |\n")


def face_rows(kv: dict) -> str:
    """Known-character accuracy split by `face` (sytwu's 2nd+ faces of a picture may be mislabeled); empty for
    older metrics."""
    if kv.get("top1_first_face") is None or kv.get("top1_later_face") is None:
        return ""
    return (f"| known top-1 / top-3, first face of a picture ({kv['n_first_face']}) | {kv['top1_first_face']:.3f} / "
            f"{kv['top3_first_face']:.3f} | |\n"
            f"| known top-1 / top-3, 2nd+ faces of a picture ({kv['n_later_face']}; may show another character) | "
            f"{kv['top1_later_face']:.3f} / {kv['top3_later_face']:.3f} | |\n")


CONFIGS = Path(__file__).with_name("configs")


def train_commands(histories: dict) -> str:
    """One `training.encoder.train` line per run, citing its committed config (training/encoder/configs/)."""
    missing = [run for run in histories if not (CONFIGS / f"{run}.toml").exists()]
    if missing:
        raise SystemExit(f"no committed config for run(s) {missing} in {CONFIGS}: a run is a config file")
    return "\n".join(
        f"python -m training.encoder.train training/encoder/configs/{run}.toml"
        + ("   # 2. encoder, 6 characters held out" if i == 0 else "")
        for i, run in enumerate(histories))


def member_blocks(run_args: dict) -> int:
    """Basic blocks of a run's encoder, from its `--depths` (runs from before that flag: model.DEPTHS)."""
    depths = run_args.get("depths") or ",".join(map(str, DEPTHS))
    return sum(int(d) for d in depths.split(","))


def ensemble_text(t: dict, dim: int) -> str:
    runs = t.get("runs") or []
    if len(runs) < 2:
        return ""
    steps = " / ".join(f"{n:,}" for n in t.get("steps_per_run") or [])
    return (f"""
- **Ensemble**: `models/encoder.onnx` holds {len(runs)} encoders of the recipe below, every completed run of it
  ({', '.join(runs)}: {steps} steps; same data and recipe, different lengths and seeds). The graph embeds the crop with
  each, whitens each (below) and returns the L2-normalised concatenation ({dim}-d). Every
  member is trained without the same 6 held-out characters.""")


def history_from_card(old: str | None, run: str) -> dict | None:
    """What is known of a run whose `runs/encoder/<run>/history.json` is not on this machine: its committed config
    (training/encoder/configs/<run>.toml) and the card before's "<run>: N steps in M min"."""
    from dataclasses import asdict

    from training.common import load_config
    from training.encoder.train import Config

    path = CONFIGS / f"{run}.toml"
    done = re.search(rf"\b{re.escape(run)}: (\d+) steps in ([\d.]+) min", old or "")
    if not (path.exists() and done):
        return None
    cfg = load_config(Config, path)
    return {"args": {**asdict(cfg), "depths": ",".join(map(str, cfg.depths))}, "steps_done": int(done.group(1)),
            "minutes": float(done.group(2))}


def with_init_runs(runs: list[str], known: dict | None = None, old: str | None = None) -> dict:
    """{run: history} for the ensemble's runs, each preceded by the runs it was fine-tuned from (--init),
    in training order, so the card lists every command that made the shipped weights. A run whose history is not
    on this machine is taken from the card before (`old`, see `history_from_card`)."""
    out: dict = {}

    def load(r: str) -> dict:
        path = OUT / r / "history.json"
        h = json.loads(path.read_text()) if path.exists() else history_from_card(old, r)
        if h is None:
            raise SystemExit(f"no {path} and no command for run {r!r} in the card before")
        return h

    def add(r: str) -> None:
        h = (known or {}).get(r) or load(r)
        if h["args"].get("init") and h["args"]["init"] not in out:
            add(h["args"]["init"])
        out[r] = h

    for r in runs:
        add(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", default="heldout", help="training run whose loss curve is plotted")
    ap.add_argument("--notes", type=Path, default=Path(__file__).with_name("card_notes.md"),
                    help="markdown appended under 'Experiments and misses' (the record of what was tried)")
    ap.add_argument("--bundle", type=Path, default=MODELS)
    ap.add_argument("--out", type=Path, default=RECORD, help="the record to write")
    args = ap.parse_args()
    bundle = args.bundle
    card_path = args.out
    old = card_path.read_text() if card_path.exists() else None
    history = json.loads((OUT / args.run / "history.json").read_text())
    ev = json.loads((OUT / "eval.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    plots(history, ev, bundle / "card")
    m = ev["metrics"]
    kv, os_, la, lat, sz = m["known_val"], m["open_set"], m["line_art_val"], m["latency"], m["sizes"]
    enc, clf = manifest["encoder"], manifest["classifier"]
    cal = m.get("calibration", {})
    notes = args.notes.read_text().strip() if args.notes.exists() else "(none recorded)"
    import onnx

    int8 = any(n.op_type == "QuantizeLinear" for n in onnx.load(str(bundle / enc["file"])).graph.node)
    n_members = len(m["encoder_training"].get("runs") or [1])
    appended = {k: m["encoder_training"].get(k) for k in ("colour", "pooled", "hires")}
    member_dim = (gallery_dims({"dim": enc["dim"], **appended}) or enc["dim"]) // n_members
    widths = step_widths({"dim": enc["dim"], **appended})
    saw = member_saw_heldout({"hires": appended["hires"], "heldout": m["encoder_training"]["heldout_in_shipped_encoder"]})

    def ok(v, t):
        return "met" if v >= t else "**missed**"

    args_ = history["args"]
    runs = m["encoder_training"].get("runs") or [args_["run"]]
    histories = with_init_runs(runs + [r for r in (appended["hires"] or {}).get("runs", []) if r not in runs], {args.run: history}, old)
    train_cmd = train_commands(histories)
    blocks = " or ".join(str(n) for n in sorted({member_blocks(histories[r]["args"]) for r in runs}))
    trained = ", ".join(f"{r}: {h.get('steps_done')} steps in {h.get('minutes')} min" for r, h in histories.items())
    text = f"""# The closed encoder: recipe, metrics and experiments

The **closed** block of `models/encoder.onnx` (`encoder.blocks`; the linear classifier reads it): encoder
(metric-learned embedding, ONNX), then classifier (linear softmax over {len(ev['characters'])} known characters,
plus a gallery of characters that users enrol). Labels: top-level `chara.json` (Danbooru tags; index = class id).
Every number below was printed by the commands in "Commands", and the same numbers are in `models/manifest.json`
under `metrics`. `python -m training.encoder.card` writes this file ("Experiments and misses" is
`training/encoder/card_notes.md`). What ships today is in [models/MODEL_CARD.md](../../models/MODEL_CARD.md).

## Data sources

- `../shared/data/faces`: 8,998 labeled face crops of 32 characters from 4 public sets (sytwu: 16
  hololive EN, about 400-600 each; swagercode 6 x 75; jlaoo 8 New Game! characters with 10-107 each;
  lauslim12 3 x 50). Split **by post**, from a hash of the post id: val 15 %, calib 10 %, train 75 %.
  The 'calib' split comes out of the training data and is used only to calibrate the classifier.
  No training step ever sees 'val'. Label noise: sytwu crops with `face` > 1 may show another
  character. They stay in every split, including val.
- `../shared/data/unlabeled`: 12,000 unlabeled 80x80 anime faces, no identities.
  {'Used for self-supervised learning.' if args_['unlabeled'] else 'The shipped encoder does not use them, because its run had no self-supervised term (see "Experiments and misses").'}
- No image, crop or conversion of this data is in the repository. Only the trained weights, the label
  list and the metrics are.

## Commands

```sh
pip install -e '.[train]'                                   # torch==2.13.0 CPU, onnx, tqdm, matplotlib
python -m training.encoder.data                             # 1. decode + cache faces, splits, line art (runs/encoder)
{train_cmd}
python -m training.encoder.export --run {','.join(runs)} --out models/encoder.onnx{' --flip-tta' if m['encoder_training']['flip_tta_in_graph'] else ''}{' --whiten' if m['encoder_training'].get('whitening') else ''}   # 3. ONNX + torch check
{'python -m training.encoder.quantize models/encoder.onnx        # 3b. int8 (the whitening stays float)' + chr(10) if int8 else ''}{colour_cmd(appended['colour'])}{pooled_cmd(appended['pooled'])}{hires_cmd(appended['hires'], saw)}python -m training.encoder.classifier                       # 4+5. classifier, calibration, chara.json, manifest
python -m training.encoder.evaluate                         # metrics -> manifest + runs/encoder/eval.json
python -m training.encoder.card --run {args_['run']}                  # this record + plots
```

Training ran on 2 shared CPU cores (one torch thread, bf16 autocast): {trained}.

## Encoder

{ensemble_text(m['encoder_training'], member_dim * n_members)}
- A compact ResNet: stem, then {blocks} basic blocks (widths 32-64-128-256), global average pooling, then
  linear + BN to a **{member_dim}-d** embedding. Input {enc['input']['size'][0]}x{enc['input']['size'][1]} RGB,
  squash-resized, x/255, then (x-0.5)/0.5. Dynamic batch, input `input0`, output `embedding`
  (L2-normalised in the graph{', with the horizontal flip averaged in the graph (test-time flip)' if m['encoder_training']['flip_tta_in_graph'] else ''}).
  The export step checks the ONNX output against torch.{' The served graph is int8 (`training.encoder.quantize`: convolutions, ReLUs and residual adds; normalisations and whitening float), and the classifier and every number below come from it.' if int8 else ''}{whiten_text(m['encoder_training'].get('whitening'))}{colour_text(appended['colour'], widths['colour'])}{pooled_text(appended['pooled'], widths['pooled'])}{hires_text(appended['hires'], widths['hires'], saw)}
- Trained **without the 6 held-out characters** ({', '.join(os_['heldout'])}), so one model serves both the
  open-set evaluation and the bundle. The 6 are known to the bundle only through the classifier{'; the classifier-only block above did see them' if saw else ''}.
- Each step: a P x K batch ({args_['p']} characters x {args_['k']} faces; characters drawn ~ sqrt(count)) plus
  {args_['unlabeled']} unlabeled faces, two augmented views of each. Losses: supervised contrastive (tau {args_['tau']})
  over all views on a projection head{', where an unlabeled face is its own class (so SimCLR for it)' if args_['unlabeled'] else ''}, plus
  {args_['cosface']} x CosFace (s {args_.get('cf_s', 24)}, m {args_.get('cf_m', 0.25)}) on the labeled embeddings. AdamW lr {args_['lr']}, wd {args_['wd']}, cosine schedule.
- Augmentation (torch/numpy/cv2, no torchvision): one affine warp for crop/zoom (side 0.72-1.18, so the
  encoder tolerates looser or tighter serving crops), aspect +-18 %, shift +-10 %, rotation +-12 deg and
  flip; brightness/contrast/saturation jitter; a small hue rotation (+-0.04 turn, because hair colour is
  identity); 10 % greyscale; 25 % low-res/blur; {int(100 * args_['p_line'])} % **line art** (XDoG, Canny,
  adaptive threshold or pencil sketch, random parameters, rendered with cv2).
- Crop: `encoder.crop` is {json.dumps(enc.get('crop'))}. The encoder was trained on tight face crops.
  The detector engineer sets this value.

## Classifier

- `classifier.npz`: W ({len(ev['characters'])}, {enc['dim']}), b. Linear softmax on L2-normalised embeddings of
  the 'train' split. It also sees one line-art rendering per training face (weight 0.5), and class weights
  are ~ 1/sqrt(count). Fitted in numpy (full-batch Adam, L2 penalty).
- Temperature: fitted on 'calib' by NLL (T = {cal.get('temperature_fitted', 'n/a')}) and **folded into W and b**,
  so the manifest says `temperature: 1.0`.
- Gallery: `gallery_scale` {clf['gallery_scale']}, `gallery_bias` {clf['gallery_bias']}. These come from
  a classifier without the 6 held-out characters. Those 6 are enrolled from 5 training pictures each as
  prototypes, scored as scale x cosine + bias next to the linear logits, and scale and bias are fitted
  by NLL over the 'calib' faces of all 32 characters.
  The gallery logits are on the same scale as the linear logits (temperature already folded in).{gallery_dims_text(clf.get('gallery_dims'), enc['dim'])}

## Metrics

Known characters: 'val' split, {kv['n']} faces, shipped encoder + classifier.

| metric | value | target |
|---|---|---|
| known top-1 | {kv['top1']:.3f} | >= 0.97 ({ok(kv['top1'], 0.97)}) |
| known top-3 | {kv['top3']:.3f} | >= 0.99 ({ok(kv['top3'], 0.99)}) |
| known top-5 | {kv['top5']:.3f} | |
| known top-1, the 6 held-out characters only (classifier, {'the block saw them' if kv.get('top1_heldout_chars') is None else 'encoder never saw them'}) | {'n/a' if kv.get('top1_heldout_chars') is None else f"{kv['top1_heldout_chars']:.3f}"} | |
{face_rows(kv)}| unseen, 1-shot top-1 / top-3 | {os_['k1']['top1']:.3f} / {os_['k1']['top3']:.3f} | |
| unseen, 5-shot top-1 / top-3 | {os_['k5']['top1']:.3f} / {os_['k5']['top3']:.3f} | |
| unseen, 10-shot top-1 | {os_['k10']['top1']:.3f} (+- {os_['k10']['top1_std']:.3f} over draws) | >= 0.85 ({ok(os_['k10']['top1'], 0.85)}) |
| unseen, 10-shot top-3 | {os_['k10']['top3']:.3f} | >= 0.95 ({ok(os_['k10']['top3'], 0.95)}) |
{serving_rows(os_.get('serving'))}| line art top-1 (all 4 renderings) | {la['all']['top1']:.3f} | |
| line art top-3 (all 4 renderings) | {la['all']['top3']:.3f} | >= 0.70 ({ok(la['all']['top3'], 0.70)}) |

Open set: the 6 characters above were never seen by the encoder. Each is enrolled with k random pictures
(prototype = mean embedding), and every other character has a training-split prototype, so the gallery
has 32 entries. The queries are the held-out characters' other pictures, excluding pictures from the
same post as a shot. 20 draws per k. 10-shot per-character top-1:
{', '.join(f'{c} {v:.2f}' for c, v in os_['k10']['per_character_top1'].items())}.
{'''
"Scored as served" is what the bot does with a server gallery: a linear classifier over the 26 characters the
encoder trained on (fitted and calibrated like the shipped one), plus the 6 enrolled from k pictures each,
scored as gallery_scale x cosine + gallery_bias next to its logits (the manifest's constants). Same draws and
queries as above.''' if os_.get('serving') else ''}

Line art per rendering (top-1 / top-3): {', '.join(f"{k} {v['top1']:.2f} / {v['top3']:.2f}" for k, v in la.items() if k != 'all')}.

![loss]({PLOTS}/loss.png) ![per-character accuracy]({PLOTS}/per_character.png) ![confusion]({PLOTS}/confusion.png)

## Sizes and latency

| | |
|---|---|
| encoder.onnx | {sz['encoder_bytes'] / 1e6:.2f} MB (limit 20 MB) |
| classifier.npz | {sz['classifier_bytes'] / 1e3:.1f} kB |
| whole `models/` directory | {sz['bundle_bytes'] / 1e6:.2f} MB (limit 40 MB) |
| encoder, 1 head per call (onnxruntime, 2 threads) | {lat['ms_per_head_batch1_median']:.2f} ms median, {lat['ms_per_head_batch1_p90']:.2f} ms p90 (limit 15 ms) |
| encoder, per head in a batch of 16 | {lat['ms_per_head_batch16']:.2f} ms |
| pre-processing (resize + normalise), per head | {lat['ms_preprocess_per_head']:.2f} ms |

The latency was measured on the training machine (2 CPU cores) by `python -m training.encoder.evaluate`; it depends on what else runs there (see the README's "Performance" and [performance.md](performance.md) for the whole pipeline on a quiet machine).

## Experiments and misses

{notes}
"""
    card_path.write_text(text)
    print(f"wrote {card_path} and {bundle / 'card'}/*.png")


if __name__ == "__main__":
    main()
