"""`python -m inference bench [--json]` — how fast, how lean, and how it compares with the reference design.

What is measured (all in one run, on this machine, with the bundle given by --bundle or BUNDLE_DIR):

- sets: pictures from ../shared/data/scenes (or --scenes), never copied anywhere. The *p50 set* is the
  JPEG scenes of at most 2 MP in which the bundle's detector finds exactly one head (found by running
  the detector once). The *mixed set* is scenes with 1 to 5 heads re-encoded in memory as PNG, WebP,
  GIF and JPEG, plus a few big PNGs (upscaled to just under the 10 MiB input limit).
- end-to-end (e2e) = `Pipeline.recognize` + `Pipeline.annotate(fmt="JPEG")`, exactly the bot's job,
  one request at a time. `p50_ms` is over the p50 set, `p95_ms` over the mixed set.
- stages: the pipeline's own timings (decode, detect, crop, embed, classify) plus annotate, median.
- model time: the onnxruntime `session.run` calls alone, replayed on the very feeds the pipeline made
  for the p50 set (detector + encoder [+ classifier if it is an ONNX model]), median per picture.
  `overhead` = e2e p50 ÷ model p50 (`overhead_recognize` leaves annotate out).
- throughput and memory: a long run of --requests requests (default 2,000; p50 and mixed pictures in
  turn) from --concurrency clients through `inference.runner.BoundedRunner` with the bot's settings
  (WORKERS threads). `throughput_per_s` = requests ÷ wall time. VmRSS from /proc/self/status is
  sampled every 100 ms: steady = median over the second half, growth = (end − after warm-up) ÷ after
  warm-up, where after warm-up = the median while requests 10-20 % were done and end = the median over
  the last 10 % of requests; peak = the largest sample.
- cold start: a fresh `python` process that imports inference, loads the bundle and answers one
  picture; seconds from spawning it to its answer (median of 3).
- the reference design, side by side, interleaved picture by picture with ours: full decode (no
  draft), the detector graph fed a 640×640 squashed picture, PIL crop + resize, one encoder call per
  head, one classifier call per head (an ONNX MatMul+Add+Softmax of the same shape when the bundle's
  classifier is linear), every session with default `ort.SessionOptions()`, then the same annotate
  step (inference/adapters/reference_design.py). Same models, so only the design differs. `reference_ratio` = our
  p50 ÷ its p50.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import memory
from ..settings import ROOT, Settings
from .reference_design import Reference

DEFAULT_SCENES = ROOT.parent / "shared" / "data" / "scenes"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
# rss_steady_mb: the coverage issue's target for a bundle of thousands of characters (the 32-character ones: 250)
TARGETS = {"p50_ms": ("<=", 60), "p95_ms": ("<=", 250), "throughput_per_s": (">=", 20), "overhead": ("<=", 1.3),
           "rss_steady_mb": ("<=", 300), "rss_growth_pct": ("<", 5), "cold_start_s": ("<=", 1.5)}


# -- small helpers -------------------------------------------------------------------------------
def _pct(xs, q: float) -> float:
    return float(np.percentile(np.asarray(xs, np.float64), q)) if len(xs) else float("nan")


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    import onnxruntime as ort

    from ..settings import cpu_count

    return {"cpus": cpu_count(), "nproc": os.cpu_count(), "cpu": cpu, "load_avg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "onnxruntime": ort.__version__}


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# -- inputs --------------------------------------------------------------------------------------
def _scene_files(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if limit and len(files) > limit:  # spread over every sub-folder, deterministically
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def _encode(im, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        im.save(buf, "PNG", compress_level=6)
    elif fmt == "WEBP":
        im.save(buf, "WEBP", quality=90)
    elif fmt == "GIF":
        im.convert("P", palette=1, colors=256).save(buf, "GIF")  # 1 = ADAPTIVE
    else:
        im.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _big_png(im, limit: int, side: int = 3000) -> bytes:
    """The picture upscaled and saved as PNG, as big as fits under `limit` bytes (long side at most `side`)."""
    from PIL import Image

    f = side / max(im.size)
    while True:
        big = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BICUBIC)
        data = _encode(big, "PNG")
        if len(data) <= limit or f < 0.5:
            return data
        f *= 0.9 * (limit / len(data)) ** 0.5


def build_sets(pipe, folder: Path, scan: int, n_p50: int, n_mixed: int, n_big: int, big_side: int, quiet: bool):
    """(p50 set, mixed set, notes): lists of (name, bytes, heads)."""
    from PIL import Image

    p50, pool, notes = [], [], {}
    for path in _scene_files(folder, scan):
        data = path.read_bytes()
        try:
            dec = pipe.decode(data)
        except Exception:
            continue
        boxes, _ = pipe.detector(dec.image)
        n = len(boxes)
        name = str(path.relative_to(folder))
        if dec.format == "JPEG" and dec.width * dec.height <= 2_000_000 and n == 1:
            p50.append((name, data, n))
        if 1 <= n <= 5:
            pool.append((name, data, n))
    notes["scanned"] = scan
    if not p50:  # e.g. a test bundle whose detector always finds the same heads: take the fewest heads
        fewest = min((h for _, _, h in pool), default=None)
        p50 = [x for x in pool if x[2] == fewest and x[0].lower().endswith((".jpg", ".jpeg"))]
        notes["p50_heads"] = fewest
    else:
        notes["p50_heads"] = 1
    p50 = p50[:n_p50]
    if not p50:
        raise SystemExit("bench: no usable scene pictures (the p50 set is empty)")
    mixed = []
    fmts = ("PNG", "WEBP", "GIF", "JPEG")
    step = max(1, len(pool) // max(1, n_mixed))
    for i, (name, data, n) in enumerate(pool[::step][:n_mixed]):
        fmt = fmts[i % len(fmts)]
        im = Image.open(io.BytesIO(data)).convert("RGB")
        mixed.append((f"{name}:{fmt.lower()}", data if fmt == "JPEG" else _encode(im, fmt), n))
    limit = pipe.settings.max_image_bytes
    for i, (name, data, n) in enumerate(pool[: n_big]):
        im = Image.open(io.BytesIO(data)).convert("RGB")
        side = int(big_side * 1.55) if i == n_big - 1 else big_side  # the last one reaches the byte limit
        mixed.append((f"{name}:big-png", _big_png(im, limit - 4096, side), n))
    _log(quiet, f"bench: p50 set {len(p50)} pictures, mixed set {len(mixed)} "
                f"(largest {max(len(d) for _, d, _ in mixed) / 2**20:.1f} MiB)")
    return p50, mixed, notes


# -- our pipeline --------------------------------------------------------------------------------
def _job(pipe, data: bytes):
    r = pipe.recognize(data)
    t = time.perf_counter()
    pipe.annotate(r, fmt="JPEG")
    return r, time.perf_counter() - t


def e2e_once(pipe, data: bytes) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r, ann = _job(pipe, data)
    total = time.perf_counter() - t0
    stages = dict(r.timings_ms)
    stages["annotate"] = ann * 1000
    stages["recognize"] = (total - ann) * 1000
    return total * 1000, stages


class _Recorder:
    """Stands in for an onnxruntime session and records the feeds it is given."""

    def __init__(self, session, log: list):
        self._s, self._log = session, log

    def run(self, outputs, feeds, *a, **k):
        self._log.append((self._s, outputs, {n: np.array(v, copy=True) for n, v in feeds.items()}))
        return self._s.run(outputs, feeds, *a, **k)

    def __getattr__(self, name):
        return getattr(self._s, name)


def record_feeds(pipe, data: bytes) -> list:
    log: list = []
    parts = [pipe.detector, pipe.embedder, pipe.classifier]
    saved = [p.session for p in parts]
    try:
        for p, s in zip(parts, saved, strict=True):
            if s is not None:
                p.session = _Recorder(s, log)
        pipe.recognize(data)
    finally:
        for p, s in zip(parts, saved, strict=True):
            p.session = s
    return log


def model_once(calls: list) -> float:
    t0 = time.perf_counter()
    for s, outs, feeds in calls:
        s.run(outs, feeds)
    return (time.perf_counter() - t0) * 1000


async def _long_run(pipe, inputs: list[bytes], n: int, concurrency: int, workers: int):
    from ..runner import BoundedRunner, Busy

    runner = BoundedRunner(workers, queue_size=max(concurrency, 1))
    state = {"next": 0, "done": 0, "busy": 0}
    lat: list[float] = []

    async def client():
        while state["next"] < n:
            i = state["next"]
            state["next"] += 1
            t = time.perf_counter()
            try:
                await runner.run(_job, pipe, inputs[i % len(inputs)])
            except Busy:  # pragma: no cover - the queue holds every client
                state["busy"] += 1
                continue
            lat.append((time.perf_counter() - t) * 1000)
            state["done"] += 1

    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((time.perf_counter(), state["done"], memory.rss_mb()))
            stop.wait(0.1)

    th = threading.Thread(target=sampler, daemon=True)
    t0 = time.perf_counter()
    th.start()
    try:
        await asyncio.gather(*(client() for _ in range(max(1, concurrency))))
    finally:
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
        runner.close()
    samples.append((time.perf_counter(), state["done"], memory.rss_mb()))
    return wall, lat, samples, state


def long_run(pipe, inputs, n, concurrency, workers) -> dict:
    wall, lat, samples, state = asyncio.run(_long_run(pipe, inputs, n, concurrency, workers))
    # Growth compares two windows, not two single samples: one sample can land while a 27 MB picture is
    # being decoded. after warm-up = median RSS while requests 10-20 % were done; end = median over the
    # last 10 % of requests. rss_end_mb (the very last sample) is reported too.
    warm_n, warm_to, end_from = max(1, n // 10), max(2, n // 5), n - max(1, n // 10)
    warm = [r for _, d, r in samples if warm_n <= d < warm_to] or [samples[-1][2]]
    tail = [r for _, d, r in samples if d >= end_from] or [samples[-1][2]]
    after_warm, end = statistics.median(warm), statistics.median(tail)
    second_half = [r for t, _, r in samples if t >= samples[0][0] + (samples[-1][0] - samples[0][0]) / 2]
    return {
        "requests": state["done"], "busy": state["busy"], "wall_s": round(wall, 2),
        "throughput_per_s": round(state["done"] / wall, 2) if wall else float("nan"),
        "latency_p50_ms": round(_pct(lat, 50), 1), "latency_p95_ms": round(_pct(lat, 95), 1),
        "rss_after_warmup_mb": round(after_warm, 1), "rss_end_window_mb": round(end, 1),
        "rss_end_mb": round(samples[-1][2], 1),
        "rss_steady_mb": round(statistics.median(second_half or [end]), 1),
        "rss_peak_mb": round(max(r for _, _, r in samples), 1),
        "rss_growth_pct": round((end - after_warm) / after_warm * 100, 2) if after_warm else float("nan"),
        "samples": len(samples),
    }


# -- cold start ----------------------------------------------------------------------------------
_COLD = r"""
import sys, time, json
t0 = time.perf_counter()
from inference.pipeline import Pipeline
from inference.settings import Settings
t1 = time.perf_counter()
pipe = Pipeline.from_bundle(sys.argv[1], Settings.from_env())
t2 = time.perf_counter()
pipe.recognize(open(sys.argv[2], 'rb').read())
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2}), flush=True)
"""


def cold_start(bundle: Path, picture: Path, runs: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", _COLD, str(bundle), str(picture)], cwd=str(ROOT), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        total = time.perf_counter() - t0
        _, err = p.communicate()
        if p.returncode != 0 or not line.strip():
            raise RuntimeError(f"cold-start process failed: {err.strip()[-500:]}")
        parts = json.loads(line)
        out.append({"total_s": total, **parts})
    med = sorted(out, key=lambda x: x["total_s"])[len(out) // 2]
    return {k: round(v, 3) for k, v in med.items()}


# -- the whole bench -----------------------------------------------------------------------------
def run_bench(bundle: Path, settings: Settings, scenes: Path, requests: int, concurrency: int,
              quiet: bool = False) -> dict:
    from ..pipeline import Pipeline

    quick = requests < 500
    if requests < 100:  # a smoke run (tests)
        scan, n_p50, n_mixed, n_big, rounds, big_side = 24, 6, 4, 1, 1, 1200
    elif quick:
        scan, n_p50, n_mixed, n_big, rounds, big_side = 60, 12, 8, 1, 2, 3000
    else:
        scan, n_p50, n_mixed, n_big, rounds, big_side = 400, 60, 36, 3, 3, 3000

    first = _scene_files(scenes, 1)
    if not first:
        raise SystemExit(f"bench: no pictures in {scenes}")
    _log(quiet, "bench: cold start ...")
    cold = cold_start(bundle, first[0], 1 if quick else 3)

    t0 = time.perf_counter()
    pipe = Pipeline.from_bundle(bundle, settings)
    load_s = time.perf_counter() - t0
    p50_set, mixed_set, notes = build_sets(pipe, scenes, scan, n_p50, n_mixed, n_big, big_side, quiet)
    for _, data, _ in (p50_set + mixed_set)[:10]:  # warm-up
        _job(pipe, data)

    # long run first (throughput + memory), before anything else allocates in this process
    inputs = [d for _, d, _ in p50_set]
    mixed_every = max(1, len(p50_set) // max(1, len(mixed_set)))
    seq, mi = [], 0
    for i, d in enumerate(inputs):
        seq.append(d)
        if i % mixed_every == 0 and mi < len(mixed_set):
            seq.append(mixed_set[mi][1])
            mi += 1
    _log(quiet, f"bench: long run, {requests} requests, {concurrency} clients, {settings.workers} worker(s) ...")
    lr = long_run(pipe, seq, requests, concurrency, settings.workers)

    # sequential latency: ours and the reference design interleaved, picture by picture
    _log(quiet, "bench: latency, model time and the reference design ...")
    ref = Reference(pipe)
    boxes = {name: np.array([h.box for h in pipe.recognize(d).heads], np.float32).reshape(-1, 4)
             for name, d, _ in p50_set}
    feeds = {name: record_feeds(pipe, d) for name, d, _ in p50_set}
    for name, d, _ in p50_set[:3]:  # warm the reference sessions
        ref.recognize(d, boxes[name])
    e2e, rec, model, ref_e2e, ref_rec = [], [], [], [], []
    stages: dict[str, list] = {}
    for _ in range(rounds):
        for name, d, _ in p50_set:
            ms, st = e2e_once(pipe, d)
            e2e.append(ms)
            rec.append(st["recognize"])
            for k, v in st.items():
                stages.setdefault(k, []).append(v)
            model.append(model_once(feeds[name]))
            a, b = ref.recognize(d, boxes[name])
            ref_e2e.append(a)
            ref_rec.append(b)
    mixed, mixed_stages = [], {}
    for _ in range(rounds):
        for _, d, _ in mixed_set:
            ms, st = e2e_once(pipe, d)
            mixed.append(ms)
            for k, v in st.items():
                mixed_stages.setdefault(k, []).append(v)

    p50 = _pct(e2e, 50)
    model_p50 = _pct(model, 50)
    ref_p50 = _pct(ref_e2e, 50)
    out = {
        "p50_ms": round(p50, 1),
        "p95_ms": round(_pct(mixed, 95), 1),
        "throughput_per_s": lr["throughput_per_s"],
        "overhead": round(p50 / model_p50, 2) if model_p50 else None,
        "rss_steady_mb": lr["rss_steady_mb"],
        "rss_growth_pct": lr["rss_growth_pct"],
        "cold_start_s": cold["total_s"],
        "reference_ratio": round(p50 / ref_p50, 3) if ref_p50 else None,
        "rss_peak_mb": lr["rss_peak_mb"],
        "p95_ms_p50_set": round(_pct(e2e, 95), 1),
        "p50_ms_mixed": round(_pct(mixed, 50), 1),
        "recognize_p50_ms": round(_pct(rec, 50), 1),
        "model_p50_ms": round(model_p50, 2),
        "overhead_recognize": round(_pct(rec, 50) / model_p50, 2) if model_p50 else None,
        "reference_p50_ms": round(ref_p50, 1),
        "reference_recognize_p50_ms": round(_pct(ref_rec, 50), 1),
        "reference_ratio_recognize": round(_pct(rec, 50) / _pct(ref_rec, 50), 3),
        "stages_p50_ms": {k: round(_pct(v, 50), 2) for k, v in stages.items()},
        "stages_mixed_p50_ms": {k: round(_pct(v, 50), 2) for k, v in mixed_stages.items()},
        "stages_mixed_p95_ms": {k: round(_pct(v, 95), 2) for k, v in mixed_stages.items()},
        "long_run": lr,
        "cold_start": cold,
        "load_s": round(load_s, 3),
        "sets": {"p50": len(p50_set), "mixed": len(mixed_set), "p50_heads": notes["p50_heads"],
                 "mixed_max_mib": round(max(len(d) for _, d, _ in mixed_set) / 2**20, 2),
                 "mixed_formats": sorted({n.rsplit(":", 1)[1] for n, _, _ in mixed_set}),
                 "rounds": rounds, "scenes": str(scenes)},
        "reference": {"detector": ref.detector_mode, "encoder": "once per head, batch 1",
                      "classifier": ref.classifier_mode, "session_options": "ort.SessionOptions() defaults",
                      "decode": "PIL full decode (no draft)", "annotate": "same JPEG annotate as ours"},
        "settings": {"ort_threads": settings.ort_threads, "workers": settings.workers,
                     "concurrency": concurrency, "queue_size": max(concurrency, 1),
                     "malloc_mmap_threshold_mb": settings.malloc_mmap_threshold_mb,
                     "malloc_applied": memory.applied()},
        "bundle": {"path": str(bundle), "name": pipe.info.get("name"), "version": pipe.info.get("version"),
                   "detector_format": pipe.info.get("detector_format")},
        "machine": machine(),
    }
    out["targets_met"] = {k: (out[k] <= v if op == "<=" else out[k] >= v if op == ">=" else out[k] < v)
                          for k, (op, v) in TARGETS.items() if isinstance(out.get(k), (int, float))}
    return out


def table(r: dict) -> str:
    m = r["machine"]
    rows = [
        ("p50_ms", "e2e p50, one-head JPEG <= 2 MP (recognize + annotate JPEG)", r["p50_ms"]),
        ("p95_ms", "e2e p95, mixed PNG/WebP/GIF/JPEG up to 10 MiB, 1-5 heads", r["p95_ms"]),
        ("throughput_per_s", f"{r['long_run']['requests']} requests, {r['settings']['concurrency']} clients, "
                             f"{r['settings']['workers']} worker(s)", r["throughput_per_s"]),
        ("overhead", f"e2e p50 / onnxruntime p50 ({r['model_p50_ms']} ms)", r["overhead"]),
        ("overhead_recognize", "recognize p50 / onnxruntime p50", r["overhead_recognize"]),
        ("rss_steady_mb", "median VmRSS, second half of the long run", r["rss_steady_mb"]),
        ("rss_peak_mb", "largest VmRSS sample", r["rss_peak_mb"]),
        ("rss_growth_pct", "last 10 % of requests vs 10-20 % (medians)", r["rss_growth_pct"]),
        ("cold_start_s", "new process: import + load + one picture", r["cold_start_s"]),
        ("reference_ratio", f"our p50 / reference design p50 ({r['reference_p50_ms']} ms)", r["reference_ratio"]),
    ]
    lines = [f"bundle {r['bundle']['name']} {r['bundle']['version']} ({r['bundle']['path']})",
             f"machine: {m['cpus']} CPUs ({m['nproc']} online), {m['cpu']}, load {m['load_avg']}, "
             f"onnxruntime {m['onnxruntime']}", "",
             f"{'metric':<20} {'value':>10}  {'target':<8} {'ok':<3} what"]
    for key, what, val in rows:
        tgt = TARGETS.get(key)
        ok = r["targets_met"].get(key)
        lines.append(f"{key:<20} {val!s:>10}  {(tgt[0] + ' ' + str(tgt[1])) if tgt else '':<8} "
                     f"{'' if ok is None else 'yes' if ok else 'NO':<3} {what}")
    lines += ["", "stage medians (ms)   " + "  ".join(f"{k} {v}" for k, v in r["stages_p50_ms"].items()),
              "mixed p95 (ms)       " + "  ".join(f"{k} {v}" for k, v in r["stages_mixed_p95_ms"].items()),
              f"sets: p50 {r['sets']['p50']} pictures ({r['sets']['p50_heads']} head), mixed {r['sets']['mixed']} "
              f"(up to {r['sets']['mixed_max_mib']} MiB), {r['sets']['rounds']} rounds each",
              f"reference design: detector {r['reference']['detector']}; encoder {r['reference']['encoder']}; "
              f"classifier {r['reference']['classifier']}; {r['reference']['session_options']}"]
    return "\n".join(lines)


def main(args, settings: Settings) -> int:
    bundle = Path(args.bundle or settings.bundle_dir)
    scenes = Path(args.scenes) if args.scenes else DEFAULT_SCENES
    if not scenes.is_dir():
        print(f"error: no scene pictures at {scenes} (use --scenes DIR)", file=sys.stderr)
        return 2
    if args.requests < 1 or args.concurrency < 1:
        print("error: --requests and --concurrency must be at least 1", file=sys.stderr)
        return 2
    r = run_bench(bundle, settings, scenes, args.requests, args.concurrency, quiet=args.json)
    print(json.dumps(r) if args.json else table(r))
    return 0
