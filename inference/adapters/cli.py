"""`python -m inference` — whois, enroll, eval, characters, bench, serve, write-manifest.

Models are loaded once per call, so many pictures in one call are fast.
Exit codes: 0 all good; 1 some picture failed (the others are still processed); 2 usage or bundle error.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from ..errors import CrystalEyesError, ImageError, describe, teach_lines
from ..result import UNKNOWN_TEXT
from ..settings import Settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _pipeline(args, settings: Settings):
    from ..pipeline import Pipeline

    return Pipeline.from_bundle(args.bundle or settings.bundle_dir, settings)


def _gallery(pipe, path: str | None, create: bool = False):
    if not path:
        return None
    if create and not Path(path).exists():
        return pipe.new_gallery()
    return pipe.load_gallery(path)


# -- whois ---------------------------------------------------------------------------------------
def _out_target(out: str | None, n_images: int) -> tuple[Path | None, Path | None]:
    """`--out`: (file, None) for a path ending in .png/.jpg/.jpeg with one input picture, else (None, directory)."""
    if not out:
        return None, None
    path = Path(out)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg") and not path.is_dir():
        if n_images != 1:
            raise ValueError(f"--out {out} names one picture but {n_images} were given; pass a directory instead")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, None
    path.mkdir(parents=True, exist_ok=True)
    return None, path


def cmd_whois(args, settings: Settings) -> int:
    pipe = _pipeline(args, settings)
    gallery = _gallery(pipe, args.gallery)
    out_file, out_dir = _out_target(args.out, len(args.images))
    failed = 0
    for path in args.images:
        try:
            data = Path(path).read_bytes()
            result = pipe.recognize(data, top_k=args.top, whole_image=args.whole_image, gallery=gallery,
                                    threshold=args.threshold)
        except (OSError, ImageError) as e:
            failed += 1
            msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            if args.json:
                print(json.dumps({"image": path, "error": msg}), flush=True)
            else:
                print(f"{path}: error: {msg}", flush=True)
            continue
        if out_file or out_dir:
            target = out_file or out_dir / (Path(path).stem + ".png")
            fmt = "JPEG" if target.suffix.lower() in (".jpg", ".jpeg") else "PNG"
            target.write_bytes(pipe.annotate(result, fmt))
            drawn = result.image.shape[1::-1] if result.image is not None else (result.width, result.height)
            shrunk = (f" (drawn at {drawn[0]}x{drawn[1]}: pictures are shrunk to DECODE_MAX_SIDE="
                      f"{settings.decode_max_side} px before recognition; boxes in --json are in the original's "
                      f"{result.width}x{result.height} pixels)") if tuple(drawn) != (result.width, result.height) else ""
            print(f"{path}: annotated picture -> {target}{shrunk}", file=sys.stderr, flush=True)
        if args.json:
            from ..annotate import label_boxes

            labels = label_boxes(result)
            print(json.dumps({"image": path, "heads": [{**h.to_json(), "label": labels[i]}
                                                       for i, h in enumerate(result.heads)]},
                             ensure_ascii=False), flush=True)
        else:
            print(f"{path}: {len(result.heads)} head(s)" + ("" if result.heads else " — no head found"
                                                            " (try --whole-image)"))
            for i, h in enumerate(result.heads, 1):
                names = ", ".join(f"{c.display} {c.probability:.1%}" for c in h.candidates)
                said = names if h.sure else f"? {UNKNOWN_TEXT} — closest: {names}"
                print(f"  {i}. {list(h.box)} {said}")
    return 1 if failed else 0


# -- enroll --------------------------------------------------------------------------------------
def cmd_enroll(args, settings: Settings) -> int:
    pipe = _pipeline(args, settings)
    t0 = time.perf_counter()
    gallery = _gallery(pipe, args.gallery, create=True)
    shots, failed = [], 0
    for path in args.images:
        try:
            shots.append(pipe.enroll_shot(Path(path).read_bytes(), whole_image=args.whole_image))
        except (OSError, ImageError) as e:
            failed += 1
            _err(f"{path}: {e.strerror if isinstance(e, OSError) and e.strerror else e}")
    if not shots:
        _err("no picture could be enrolled; the gallery is unchanged")
        return 1
    import numpy as np

    tag = gallery.add(args.character, np.stack([s.vector for s in shots]))
    gallery.save(args.gallery)
    shown = gallery.display(tag)
    named = f"{shown!r} (tag {tag})" if shown != tag else tag
    print(f"enrolled {len(shots)} picture(s) of {named} into {args.gallery} "
          f"({gallery.count(tag)} in total for it, {len(gallery)} character(s)) in {time.perf_counter() - t0:.2f} s")
    report = pipe.assess_taught(gallery, tag, shots)
    if report is not None:
        for line in teach_lines(report, shown, where="cli"):
            print(f"  {line}")
    return 1 if failed else 0


# -- eval ----------------------------------------------------------------------------------------
def _labeled(source: Path, limit: int | None) -> list[tuple[Path, str]]:
    items: list[tuple[Path, str]] = []
    if source.is_dir():
        for sub in sorted(p for p in source.iterdir() if p.is_dir()):
            items += [(f, sub.name) for f in sorted(sub.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        with open(source, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                p = Path(row["path"])
                for base in (source.parent, source.parent.parent):
                    if (base / p).is_file():
                        p = base / p
                        break
                items.append((p, row["character"]))
    return items[:limit] if limit else items


def _progress(done: int, total: int, t0: float) -> None:
    """A progress line on stderr: redrawn in place on a terminal, every 10 % otherwise."""
    if total <= 0:
        return
    tty = sys.stderr.isatty()
    step = max(1, total // 10)
    if tty or done == total or done % step == 0:
        rate = done / max(time.perf_counter() - t0, 1e-9)
        line = f"eval: {done}/{total} pictures ({rate:.1f}/s)"
        print(("\r" + line) if tty else line, end="\n" if (not tty or done == total) else "", file=sys.stderr,
              flush=True)


def cmd_eval(args, settings: Settings) -> int:
    pipe = _pipeline(args, settings)
    gallery = _gallery(pipe, args.gallery)
    items = _labeled(Path(args.source), args.limit)
    known = set(pipe.bundle.characters.tags) | set(gallery.names if gallery else [])
    ks = (1, 3, 5)
    hits = dict.fromkeys(ks, 0)
    per: dict[str, list[int]] = {}  # character -> [pictures, top-1 hits, top-3 hits]
    unknown: dict[str, int] = {}  # character the bundle does not know -> pictures skipped
    unreadable: list[tuple[str, str]] = []
    n = nohead = 0
    todo = [(p, t) for p, t in items if t in known]
    for _, t in items:
        if t not in known:
            unknown[t] = unknown.get(t, 0) + 1
    t0 = time.perf_counter()
    for done, (path, truth) in enumerate(todo, 1):
        try:
            r = pipe.recognize(path.read_bytes(), top_k=max(ks), whole_image=args.whole_image, gallery=gallery)
        except (OSError, ImageError) as e:
            unreadable.append((str(path), e.strerror if isinstance(e, OSError) and e.strerror else str(e)))
            _progress(done, len(todo), t0)
            continue
        n += 1
        row = per.setdefault(truth, [0, 0, 0])
        row[0] += 1
        if not r.heads:
            nohead += 1
            _progress(done, len(todo), t0)
            continue
        # the head whose candidates rank the truth best
        ranks = [next((i for i, c in enumerate(h.candidates) if c.name == truth), 99) for h in r.heads]
        best = min(ranks)
        for k in ks:
            hits[k] += best < k
        row[1] += best < 1
        row[2] += best < 3
        _progress(done, len(todo), t0)
    skipped = sum(unknown.values()) + len(unreadable)
    report = {"images": n, "skipped": skipped, "skipped_unknown_character": sum(unknown.values()),
              "skipped_unreadable": len(unreadable), "no_head": nohead,
              **{f"top{k}": round(hits[k] / n, 4) if n else None for k in ks}}
    if args.json:
        report["per_character"] = {c: {"images": v[0], "top1": round(v[1] / v[0], 4), "top3": round(v[2] / v[0], 4)}
                                   for c, v in sorted(per.items())}
        report["unknown_characters"] = dict(sorted(unknown.items()))
        report["unreadable"] = [{"path": p, "error": e} for p, e in unreadable]
        print(json.dumps(report, ensure_ascii=False))
        return 0 if n else 1
    if per:
        width = max(len(c) for c in per)
        print(f"{'character':<{width}}  images  top-1  top-3")
        for c, (m, h1, h3) in sorted(per.items()):
            print(f"{c:<{width}}  {m:>6}  {h1 / m:5.1%}  {h3 / m:5.1%}")
    if unknown:
        print(f"skipped {sum(unknown.values())} picture(s) of {len(unknown)} character(s) this bundle does not know "
              f"(teach them with enroll, or evaluate a bundle that has them): "
              + ", ".join(f"{c} ({k})" for c, k in sorted(unknown.items())[:20]) + (" ..." if len(unknown) > 20 else ""))
    for p, e in unreadable:
        print(f"skipped {p}: {e}")
    print("  ".join(f"{k}={v}" for k, v in report.items()))
    return 0 if n else 1


# -- characters ----------------------------------------------------------------------------------
def cmd_characters(args, settings: Settings) -> int:
    from ..bundle import Bundle

    bundle = Bundle.load(args.bundle or settings.bundle_dir, threads=1)
    index = bundle.characters
    hits = index.search(args.query or "")
    shown = hits[: args.limit] if args.limit else hits
    if args.json:
        print(json.dumps({"characters": len(index), "series": index.series_count, "matches": len(hits),
                          "results": [{"name": c.tag, "display": c.display, "series": c.series, "url": c.url}
                                      for c in shown]}, ensure_ascii=False))
        return 0 if hits else 1
    what = f" matching {args.query!r}" if args.query else ""
    print(f"{bundle.info()['name']} {bundle.info()['version']} knows {len(index)} characters from "
          f"{index.series_count} works; {len(hits)}{what}" + (f", first {len(shown)}:" if len(shown) < len(hits) else ":"))
    for c in shown:
        extra = "  ".join(x for x in (c.series and f"— {c.series}", c.url) if x)
        print(f"  {c.tag}  {c.display}  {extra}".rstrip())
    return 0 if hits else 1


# -- serve / bench / write-manifest ---------------------------------------------------------------
def cmd_serve(args, settings: Settings) -> int:
    from .api import run

    s = settings.with_(http_host=args.host or settings.http_host, http_port=args.port or settings.http_port)
    pipe = _pipeline(args, s)
    run(pipe, s)
    return 0


def cmd_bench(args, settings: Settings) -> int:
    try:
        import onnx  # noqa: F401  (the reference-design side of the benchmark builds ONNX models)
    except ImportError:
        _err("bench needs the dev extra: pip install -e '.[dev]'")
        return 2
    from .bench import main as bench_main

    return bench_main(args, settings)


def cmd_write_manifest(args, settings: Settings) -> int:
    from ..reference import write_reference_manifest

    path = write_reference_manifest(args.reference)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inference", description="Crystal Eyes: who is in this picture?")
    sub = p.add_subparsers(dest="command", required=True)

    def bundle_opt(sp):
        sp.add_argument("--bundle", help="model bundle directory (default: BUNDLE_DIR or ./models)")

    w = sub.add_parser("whois", help="name the characters in pictures")
    w.add_argument("images", nargs="+", metavar="IMAGE")
    w.add_argument("--top", type=int, default=3, help="candidates per head (default 3)")
    w.add_argument("--json", action="store_true", help="one JSON line per picture")
    w.add_argument("--whole-image", action="store_true", help="treat each picture as one head crop")
    w.add_argument("--gallery", help="gallery file of enrolled characters (.npz)")
    w.add_argument("--threshold", type=float, default=None, help="name a head only when its 'known' score reaches this (default: the bundle's calibrated threshold)")
    w.add_argument("--out", help="write the annotated picture to this .png/.jpg file (one input), or the annotated "
                                 "pictures into this directory")
    bundle_opt(w)
    w.set_defaults(func=cmd_whois)

    e = sub.add_parser("enroll", help="add a character to a gallery file, no retraining")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    e.add_argument("--gallery", required=True)
    e.add_argument("--character", required=True, help="name, e.g. 'aqua_(konosuba)' or 'Mori Calliope'")
    e.add_argument("--whole-image", action="store_true", help="each picture is one head crop")
    bundle_opt(e)
    e.set_defaults(func=cmd_enroll)

    v = sub.add_parser("eval", help="top-1/3/5 on a labeled folder (one subfolder per character) or CSV")
    v.add_argument("source", help="folder or CSV with columns path,character")
    v.add_argument("--whole-image", action="store_true")
    v.add_argument("--gallery")
    v.add_argument("--limit", type=int)
    v.add_argument("--json", action="store_true")
    bundle_opt(v)
    v.set_defaults(func=cmd_eval)

    c = sub.add_parser("characters", help="who the bundle knows: search by name, tag or work")
    c.add_argument("query", nargs="?", default="", help="words to look for (all must match); none lists everyone")
    c.add_argument("--limit", type=int, default=50, help="show at most this many (0 = all; default 50)")
    c.add_argument("--json", action="store_true")
    bundle_opt(c)
    c.set_defaults(func=cmd_characters)

    b = sub.add_parser("bench", help="performance benchmark (see README)")
    b.add_argument("--json", action="store_true")
    b.add_argument("--requests", type=int, default=2000, help="requests in the long run (RSS)")
    b.add_argument("--concurrency", type=int, default=4)
    b.add_argument("--scenes", help="folder of pictures (default ../shared/data/scenes)")
    bundle_opt(b)
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("serve", help="HTTP API (POST /detect, /dectect/, GET /healthz)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    bundle_opt(s)
    s.set_defaults(func=cmd_serve)

    m = sub.add_parser("write-manifest", help="write manifest.json for a bundle in the reference layout")
    m.add_argument("--reference", required=True, metavar="DIR")
    m.set_defaults(func=cmd_write_manifest)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if getattr(args, "top", None) is not None and not 1 <= args.top <= 50:
            _err("--top must be between 1 and 50")
            return 2
        return args.func(args, settings)
    except CrystalEyesError as e:  # the exit code from the error table (inference/errors.py)
        _err(str(e))
        return describe(e).exit_code
    except ValueError as e:  # a bad option or setting
        _err(str(e))
        return 2
    except KeyboardInterrupt:
        return 130
