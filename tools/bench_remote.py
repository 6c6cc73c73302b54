"""Benchmark of remote inference (docs/scaling.md): a local Ray cluster serving the bundle, measured three ways.

    python -m tools.bench_remote [--bundle models] [--seconds 15] [--concurrency 8] [--json]

1. added latency: one picture after another, the in-process pipeline (recognize + annotate) against the same
   through the recognition service over loopback (INFERENCE_URL); p50 of each and of the difference;
2. throughput with 1 and then 2 replicas (1 onnxruntime thread each), `--concurrency` requests in flight;
3. the bot's acknowledgement under 200 concurrent /whois (SimCord, the real bot with INFERENCE_URL): the time
   from each interaction being sent to its first response (defer, or the busy answer), p50 and p99.

Needs the dev and serve extras (simcord, Ray). Use an otherwise idle machine: the numbers are wall-clock. It sits in
tools/, above the bot it drives (bot.py), so that nothing in service/ or inference/ imports the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT.parent / "shared" / "data" / "scenes" / "misc" / "kiyoshimu-test0.jpg"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latency(local, model, data: bytes, rounds: int) -> dict:
    """Alternating local and remote calls, so drift in the machine's speed hits both alike."""
    loc, rem = [], []
    for _ in range(3):  # warm-up
        local.annotate(local.recognize(data, top_k=10), fmt="JPEG")
        model.recognition(data, top_k=10)
    for _ in range(rounds):
        t0 = time.perf_counter()
        local.annotate(local.recognize(data, top_k=10), fmt="JPEG")
        t1 = time.perf_counter()
        model.recognition(data, top_k=10)
        t2 = time.perf_counter()
        loc.append((t1 - t0) * 1000)
        rem.append((t2 - t1) * 1000)
    return {"rounds": rounds, "local_p50_ms": round(statistics.median(loc), 1),
            "remote_p50_ms": round(statistics.median(rem), 1),
            "added_p50_ms": round(statistics.median([r - c for r, c in zip(rem, loc, strict=True)]), 1),
            "remote_p90_ms": round(pct(rem, 90), 1)}


def throughput(model, data: bytes, seconds: float, concurrency: int) -> dict:
    done, failed = [], []
    stop = time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                model.recognition(data, top_k=10)
                done.append(time.perf_counter() - t0)
            except Exception as exc:  # busy (503 after the retries) counts, does not stop the run
                failed.append(type(exc).__name__)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"pictures_per_s": round(len(done) / wall, 2), "done": len(done), "failed": len(failed),
            "p50_ms": round(statistics.median(done) * 1000, 1) if done else None,
            "concurrency": concurrency, "seconds": round(wall, 1)}


async def acks(bundle: Path, url: str, data: bytes, n: int = 200) -> dict:
    """n /whois at once through the real bot on SimCord; the time to each interaction's first response."""
    import tempfile

    import discord
    import simcord

    from bot import create_bot
    from inference.settings import Settings
    from service.config import BotConfig

    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    originals = {name: getattr(discord.InteractionResponse, name) for name in ("defer", "send_message")}

    def timed(name):
        original = originals[name]

        async def wrapper(self, *args, **kwargs):
            resolved = (self._parent.data or {}).get("resolved", {}).get("attachments", {})
            for att in resolved.values():
                acked.setdefault(att["filename"], time.perf_counter())
            return await original(self, *args, **kwargs)

        return wrapper

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(bundle_dir=bundle, ort_threads=1, top_k=3)
        config = BotConfig(data_dir=Path(tmp), user_cooldown=(0, 0.0), guild_cooldown=(0, 0.0), inference_url=url)
        bot = create_bot(settings, config=config)
        env = simcord.Env(bot)
        await env.start()
        for name in originals:
            setattr(discord.InteractionResponse, name, timed(name))
        try:
            guild = env.create_guild(name="Bench")
            channel = guild.create_text_channel("art")
            members = [guild.add_member(env.create_user(f"u{i}")) for i in range(10)]
            await env.bot.tree.sync()
            await members[0].slash(channel, "whois", image=("warm.jpg", data))

            async def no_wait(**kwargs):
                return None

            env._settle_internal, settle = no_wait, env._settle_internal  # dispatch all n without waiting
            t0 = time.perf_counter()
            for i in range(n):
                sent[f"p{i}.jpg"] = time.perf_counter()
                await members[i % len(members)].slash(channel, "whois", image=(f"p{i}.jpg", data))
                await asyncio.sleep(0)
            deadline = time.monotonic() + 300
            while (len(acked) < n + 1 or bot.recognizer.pending) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            wall = time.perf_counter() - t0
            env._settle_internal = settle
            await env.settle(timeout=300)
        finally:
            for name, original in originals.items():
                setattr(discord.InteractionResponse, name, original)
            await env.shutdown()
            bot.release()
    waits = [(acked[k] - sent[k]) * 1000 for k in sent if k in acked]
    answers = [e for e in env.http_requests if e.method == "POST" and e.path.startswith("/webhooks/")]
    named = sum(1 for e in answers if isinstance(e.json, dict) and e.json.get("embeds"))
    return {"interactions": n, "acknowledged": len(waits), "ack_p50_ms": round(pct(waits, 50), 1),
            "ack_p99_ms": round(pct(waits, 99), 1), "ack_max_ms": round(max(waits), 1), "seconds": round(wall, 1),
            "results": named, "inference_concurrency": config.inference_concurrency, "queue": settings.queue_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench_remote", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "models")
    ap.add_argument("--picture", type=Path, default=PICTURE)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from ray import serve as ray_serve

    from inference.adapters import serve
    from inference.pipeline import Pipeline
    from inference.settings import Settings
    from service.config import BotConfig
    from service.remote import RemoteModel

    data = args.picture.read_bytes()
    settings = Settings(bundle_dir=args.bundle, ort_threads=1)
    out: dict = {"picture": args.picture.name, "bundle": str(args.bundle)}
    url = serve.start(settings, port=free_port(), replicas=1)
    try:
        model = RemoteModel.connect(settings, BotConfig(inference_url=url, inference_retries=2))
        out["latency"] = latency(Pipeline.from_bundle(args.bundle, settings), model, data, args.rounds)
        out["throughput_1_replica"] = throughput(model, data, args.seconds, args.concurrency)
        out["acks_1_replica"] = asyncio.run(acks(args.bundle, url, data))
        ray_serve.run(serve.application(settings, replicas=2), name=serve.APP, route_prefix="/")
        out["throughput_2_replicas"] = throughput(model, data, args.seconds, args.concurrency)
        out["acks_2_replicas"] = asyncio.run(acks(args.bundle, url, data))
    finally:
        serve.stop()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        lat = out["latency"]
        print(f"latency (p50, {lat['rounds']} rounds): in process {lat['local_p50_ms']} ms, remote "
              f"{lat['remote_p50_ms']} ms, added {lat['added_p50_ms']} ms")
        for k in ("throughput_1_replica", "throughput_2_replicas"):
            t = out[k]
            print(f"{k}: {t['pictures_per_s']}/s ({t['done']} done, {t['failed']} failed, p50 {t['p50_ms']} ms)")
        for k in ("acks_1_replica", "acks_2_replicas"):
            a = out[k]
            print(f"{k}: {a['acknowledged']}/{a['interactions']} acknowledged, p50 {a['ack_p50_ms']} ms, "
                  f"p99 {a['ack_p99_ms']} ms, max {a['ack_max_ms']} ms; {a['results']} results, the rest busy, "
                  f"all answered in {a['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
