"""Stage 5: the record's section for the many-character bundle (docs/experiments/general-encoder.md), from the numbers the stages recorded.

    python -m training.general.card RUN [--bundle models] [--scenes runs/general/scenes.json]

Writes models/card/general_loss.png (training loss and validation curves) and models/card/known_unknown.png (the
known/unknown score of known and never-seen characters, 'report' half), and prints the markdown section that opens
docs/experiments/general-encoder.md, the record of the general encoder (every number read from the manifest,
history.json and the scenes run). The model card (models/MODEL_CARD.md) is short and written by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.common import ROOT
from training.general.dataset import OUT

PLOTS = "../../models/card"  # the plots, as docs/experiments/general-encoder.md links them


def pct(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def members(run: str) -> list[str]:
    """The trained runs behind `run`: its ensemble's members (`training.general.export --members`), else itself."""
    info = json.loads((OUT / run / "general_export.json").read_text())
    return [m["run"] for m in info.get("members", [])] or [run]


def general_text(run: str, info: dict) -> str:
    """What the general block is: one run, or an ensemble of runs, with their configs, steps and minutes."""
    def one(name: str) -> str:
        h = json.loads((OUT / name / "history.json").read_text())
        return (f"config `training/general/configs/{name}.toml`: {h['steps_done']:,} steps in "
                f"{h.get('minutes', 0):.0f} min on 2 CPU cores")

    tail = f"int8 {info['int8_bytes'] / 1e6:.1f} MB, mean cosine to the float graph {info['int8_mean_cosine_to_float']}"
    if "members" not in info:
        return f"{info['dim']}-d, run `{run}`, {one(run)}, {tail}"
    parts = "; ".join(f"`{m['run']}` ({m['dim']}-d, {one(m['run'])})" for m in info["members"])
    return (f"{info['dim']}-d, run `{run}`: an ensemble of {parts}, side by side, so its cosine is the mean of the "
            f"members'; {tail}")


def plots(run: str, card: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    names = members(run)
    for name in names:
        h = json.loads((OUT / name / "history.json").read_text())
        ax[0].plot(h["step"], h["loss"], lw=0.6, label=name)
        ev = h["eval"]
        steps = [e["step"] for e in ev]
        for key in ("unseen_outfit", "fanart_proxy", "faces_val"):
            ax[1].plot(steps, [e[key][0] for e in ev], marker="o",
                       label=f"{key} top-1" + (f" ({name})" if len(names) > 1 else ""))
    ax[0].set(title=f"{' + '.join(names)}: training loss (CosFace + SupCon)", xlabel="step")
    if len(names) > 1:
        ax[0].legend(fontsize=8)
    ax[1].set(title="validation (prototypes of all identities)", xlabel="step", ylim=(0, 1))
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(card / "general_loss.png", dpi=90)
    plt.close(fig)
    z = np.load(OUT / run / "decision_scores.npz")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(0, 1, 41)
    ax.hist(z["known"], bins=bins, alpha=0.6, density=True, label=f"known characters ({len(z['known'])})")
    ax.hist(z["unknown"], bins=bins, alpha=0.6, density=True, label=f"never-seen characters ({len(z['unknown'])})")
    ax.axvline(float(z["threshold"]), color="k", ls="--", label=f"threshold {float(z['threshold']):.2f}")
    ax.set(title="known score, leave-characters-out ('report' half, 'calib' fit)", xlabel="known")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(card / "known_unknown.png", dpi=90)
    plt.close(fig)


def closed_parts_text(manifest: dict) -> str:
    """The closed block's declared parts (`encoder.blocks[].parts`), e.g. "embedding 512, colour 216 ..."."""
    parts = next((b.get("parts") for b in manifest["encoder"].get("blocks", []) if b["name"] == "closed"), None)
    return "parts " + ", ".join(f"{p['name']} {p['dims']}" for p in parts) if parts else "no declared parts"


def compares_text(manifest: dict) -> str:
    """What galleries compare (`classifier.gallery_compares`), e.g. "the mean cosine of general, closed.colour"."""
    c = manifest["classifier"].get("gallery_compares")
    if not c:
        return f"the first {manifest['classifier'].get('gallery_dims')} dimensions"
    w = {x.get("weight", 1.0) for x in c}
    parts = ", ".join(x["part"] if len(w) == 1 else f"{x['part']} x{x.get('weight', 1.0)}" for x in c)
    return f"`gallery_compares`: the {'mean' if len(w) == 1 else 'weighted mean'} of the cosines of {parts}"


def section(run: str, manifest: dict, scenes: dict | None) -> str:
    m = manifest["metrics"]["coverage"]
    info = json.loads((OUT / run / "general_export.json").read_text())
    names = members(run)
    cal = m["calibration"]
    d = m["decision"]
    rows = [
        ("a game character's unseen outfit, among all known characters (`unseen_outfit`)", m["unseen_outfit"],
         ">= .80 / >= .90"),
        ("the same, the gallery comparison alone (no classifier)", m["unseen_outfit_gallery_only"], ""),
        ("faces/ fan art of characters known from one portrait, the portrait alone (`fanart_proxy`, gallery only; "
         "optimistic since 2026.12.05: the closed block's encoder was trained on these faces/ characters, so the One "
         "Piece pictures below are the clean check)", m["fanart_proxy_gallery_only"], ">= .50 / >= .65"),
        ("the 32 classifier characters, faces/ 'val' (`faces_val`)", m["faces_val"], ">= .97 top-1"),
        (f"new characters enrolled with 10 shots ({m.get('enrolled_10_shots', {}).get('characters', '?')} faces/ "
         "characters the general encoder saw no face of; 5 draws; the gallery comparison; optimistic since "
         "2026.12.05, as the closed block's encoder was trained on them)",
         m.get("enrolled_10_shots", {"top1": None, "top3": None, "n": 0}),
         ">= .85 / >= .95"),
        ("the 32, faces/ 'calib' (used to calibrate)", m["faces_calib"], ""),
    ]
    lines = [
        f"## Bundle {manifest['version']}: {manifest['known']['characters']:,} characters known by picture",
        "",
        f"The encoder graph is two blocks (`encoder.blocks`): **general** ({general_text(run, info)}) and **closed** (the encoder of 2026.11.30.2, unchanged, read by the "
        f"32-character linear classifier; {closed_parts_text(manifest)}). The known characters are prototypes of what galleries "
        f"compare ({compares_text(manifest)}) "
        f"(`known.npz`, {manifest['known']['characters']:,} characters, float16), combined with the classifier in "
        f"one ranking (mode `{cal['mode']}`, scale {cal['scale']}, bias {cal['bias']}; calibrated on faces/ 'calib' "
        "and half of the held-out outfits, by mean top-1).",
        "",
        "Commands (each stage one command; data caches in `runs/`, never committed):",
        "```",
        "python -m training.encoder.data                 # faces/ crops (the 32 characters)",
        "python -m training.general.data                 # characters/ heads, cut by the serving detector",
        *(f"python -m training.general.train training/general/configs/{name}.toml" for name in names),
        f"python -m training.general.export {run}" + (f" --members {' '.join(names)}" if "members" in info else ""),
        f"python -m training.general.bundle {run}         # compose, calibrate, measure, decide -> runs/general/bundle",
        "python -m training.general.scenes --bundle runs/general/bundle --json > runs/general/scenes.json",
        "python -m training.general.bundle --install runs/general/bundle",
        "python -m training.detector.label                    # the detector's training labels (the verifier's boxes)",
        "python -m training.detector.verifier --bundle models  # refit the head verifier (it reads the closed block)",
        f"python -m training.general.card {run}",
        "```",
        "",
        "Who each one is (`characters.json`, `training/general/labels.py`): name, work and MyAnimeList page. The works of MyAnimeList characters come from `characters/series.csv`, else from the reference look-up by name; that look-up says nothing about which of two characters of one name it means (Re:Zero's Rem, not Death Note's), so for the 47 portraits whose name another shares only the 20 checked by eye to be the reference's character (`training/general/series_checked.json`) get its work; the other 27 show their page instead of a wrong work. Works joined by name were looked at by eye too. Of `characters/series.csv`'s 511 joins of a MyAnimeList name to a Danbooru tag, 47 give a work that is not the portrait's character's, or one the portrait cannot confirm (Inuyasha's Kikyou joined to Blue Archive, One Punch Man's Boros to Hololive, Gintama's Elizabeth to Persona: `training/general/joins_checked.json`); they show their MyAnimeList page instead. Of the 51 merges, 5 were other characters of the same name (Claymore's Irene and Jean, Darker than Black's Amber, Fist of the North Star's Rei, and a Courier who is not Arknights': `training/general/merge_checked.json`) and stay apart. Each work has one spelling (the one its source writes with capitals, else Danbooru's tag title-cased: \"hololive\" and \"Hololive\" are one work, 420 spellings became 357). `python -m training.general.refresh` brings a built bundle in line with such corrections (its index, and the prototypes of the characters whose pictures changed, recomputed as a rebuild would).",
        "",
        "Validation (leave-variant-out, leave-characters-out; splits in `training/general/split.py`; prototypes of"
        f" the training pictures only, {m['known_identities_measured']:,} identities at once):",
        "",
        "| measure | top-1 | top-3 | n | target |",
        "|---|---:|---:|---:|---|",
    ]
    for name, v, target in rows:
        lines.append(f"| {name} | {pct(v['top1'])} | {pct(v['top3'])} | {v['n']} | {target} |")
    lines += ["", "Unseen outfits per source (both halves):", "", "| source | top-1 | top-3 | n |", "|---|---:|---:|---:|"]
    for src, v in m["unseen_outfit_per_source"].items():
        lines.append(f"| {src} | {pct(v['top1'])} | {pct(v['top3'])} | {v['n']} |")
    if scenes:
        op, ng = scenes["onepiece"], scenes["newgame"]
        lines += ["", "Whole pictures through the real pipeline (`training.general.scenes`; a picture counts when one "
                  "of its heads has the character):", "",
                  "| set | pictures | top-1 | top-3 |", "|---|---:|---:|---:|",
                  f"| One Piece fan art and screenshots (Luffy, Zoro, Sanji: known from one MyAnimeList portrait each) "
                  f"| {op['pictures']} | {pct(op['top1'])} | {pct(op['top3'])} |",
                  f"| New Game! fan art | {ng['pictures']} | {pct(ng['top1'])} | {pct(ng['top3'])} |", "",
                  f"The reference system's examples named right (top-1): **{scenes['reference_named']}**"]
        for name, v in scenes["reference_examples"].items():
            top = v["heads"][0][0] if v["heads"] else None
            lines.append(f"- `{name}` ({v['want']}): top-1 " + (f"{top[1]} ({top[0]}, {top[2]:.2f})" if top else "none"))
    fitted = d["fitted"]
    lines += [
        "", "### Known or not (`inference/decide.py`)", "",
        f"A logistic score of {', '.join(fitted['features'])} (weights {fitted['weights']}, bias {fitted['bias']}), "
        f"threshold {fitted['threshold']}. Known heads: faces/ 'calib' and 'val' + unseen outfits; unknown: every "
        "picture of the characters/ characters held out whole (never trained on, not in the measuring gallery). The "
        "features (`DECISION_FEATURES` in training/general/bundle.py) were chosen on the 'calib' half only. The "
        "shipped score is fitted on both halves, its threshold where at most "
        f"{d.get('max_unknown_named', 0.05):.0%} of their never-seen heads are named (a point under the target, "
        "for the sampling error of ~430 heads); the honest estimate is **cross-fitted**: each half scored by the "
        "decision fitted on the other half alone.", "",
        "| heads (each scored by the other half's fit) | unknown named | known named right | known named wrong | "
        "AUROC | AUROC of top-1 probability alone |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    if "cross_fitted" in d:
        v = d["cross_fitted"]
        lines.append(f"| **both halves** ({v['unknown_heads']} unknown, {v['known_heads']} known) | "
                     f"**{v['unknown_named']:.3f}** | **{v['known_named_right']:.3f}** | {v['known_named_wrong']:.3f} "
                     "| | |")
    for half in ("calib", "report"):
        for key, what in ((half, half), (half + "_first_three_features", f"{half}, first three features only")):
            if key not in d:
                continue
            v = d[key]
            lines.append(f"| {what} | {v['unknown_named']:.3f} | {v['known_named_right']:.3f} | "
                         f"{v['known_named_wrong']:.3f} | {v['auroc_known_vs_unknown']:.3f} | "
                         f"{d[half + '_top1_probability_only']['auroc_known_vs_unknown']:.3f} |")
    lines += ["| target (issue 29) | <= .05 | >= .93 | | >= .99 | |"]
    if "unlabeled_named" in d:
        u = d["unlabeled_named"]
        lines += ["", f"Of the {u['crops']:,} unlabeled/ face crops (game art, no identities; some may be characters "
                  f"the bundle knows, so this is an upper bound) {u['named']:.3f} are named at the threshold."]
    lines += ["", f"![known score]({PLOTS}/known_unknown.png)", "",
              f"![general encoder training]({PLOTS}/general_loss.png)", ""]
    notes = Path(__file__).with_name("card_notes.md")
    if notes.exists():
        lines += ["### Tried, not shipped", "", notes.read_text().strip(), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--bundle", type=Path, default=ROOT / "models")
    ap.add_argument("--scenes", type=Path, default=OUT / "scenes.json")
    args = ap.parse_args()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    plots(args.run, args.bundle / "card")
    scenes = json.loads(args.scenes.read_text()) if args.scenes.exists() else None
    print(section(args.run, manifest, scenes))


if __name__ == "__main__":
    main()
