"""Every hostile picture of tests/hostile/corpus.py, through decode, the pipeline (under a memory limit),
the CLI and the HTTP API: a clear error or a correct result, in bounded time and memory, no crash."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hostile.corpus import Item, content_type, corpus
from inference import errors
from inference.adapters.api import create_app
from inference.decode import decode
from inference.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ITEM_SECONDS = 5.0  # generous per-item bound (the slowest legal item takes ~1 s on a busy 2-core box)
HEADROOM_MIB = 768  # address space a whole recognition may add on top of a warmed-up pipeline
NAMES = sorted(corpus())


def check_outcome(name: str, item: Item, outcome: str) -> None:
    """outcome: "ok" or "error:<Class>"."""
    if item.expect == "any":
        assert outcome == "ok" or outcome.startswith("error:"), (name, outcome)
    elif item.expect == "error":
        assert outcome.startswith("error:"), (name, outcome)
    else:
        assert outcome == item.expect, (name, outcome)


def plain(message: str) -> bool:
    """A message a user can be shown: one short line, no traceback, no paths."""
    return bool(message) and "\n" not in message and len(message) < 300 and "Traceback" not in message \
        and "/" not in message


@pytest.mark.parametrize("name", NAMES)
def test_decode(name):
    item = corpus()[name]
    t0 = time.perf_counter()
    try:
        d = decode(item.data)
        outcome = "ok"
    except errors.ImageError as e:
        outcome = f"error:{type(e).__name__}"
        assert plain(str(e)), (name, str(e))
    seconds = time.perf_counter() - t0
    check_outcome(name, item, outcome)
    assert seconds < ITEM_SECONDS, (name, seconds)
    if outcome == "ok":
        assert d.image.dtype.name == "uint8" and d.image.ndim == 3 and d.image.shape[2] == 3
        assert d.image.flags.c_contiguous and max(d.image.shape[:2]) <= 2048
        if item.expect_shape:
            assert d.image.shape[:2] == item.expect_shape, name


def test_exif_orientation_puts_the_left_stripe_where_it_belongs():
    c = corpus()
    # orientation 6 = rotate 90° clockwise to display: the red left edge becomes the top edge
    top = decode(c["exif_orientation_6.jpg"].data).image
    assert top[:5, :, 0].mean() > 200 and top[-5:, :, 0].mean() < 60
    # orientation 8 = rotate 90° counter-clockwise: the left edge becomes the bottom edge
    bottom = decode(c["exif_orientation_8.jpg"].data).image
    assert bottom[-5:, :, 0].mean() > 200 and bottom[:5, :, 0].mean() < 60
    # orientation 3 = 180°: the left edge becomes the right edge
    right = decode(c["exif_orientation_3.jpg"].data).image
    assert right[:, -5:, 0].mean() > 200 and right[:, :5, 0].mean() < 60


def test_corrupt_png_is_not_a_blank_picture():
    """Regression: PNG getexif() loads the pixels; its failure was swallowed and a second load() gave a
    blank (all-zero) picture for a corrupt PNG."""
    with pytest.raises(errors.CorruptImageError):
        decode(corpus()["png_bad_idat.png"].data)


def test_pipeline_under_a_memory_limit(tiny_bundle):
    """Pipeline.recognize on every item in a subprocess whose address space may grow by HEADROOM_MIB only."""
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "hostile" / "bounded_run.py"), str(tiny_bundle),
                        str(HEADROOM_MIB)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    head, rows = lines[0], {r["name"]: r for r in lines[1:]}
    assert set(rows) == set(NAMES), "the subprocess did not get through the corpus"
    for name, r in rows.items():
        assert not r["outcome"].startswith("crash"), (name, r)
        check_outcome(name, corpus()[name], r["outcome"])
        assert r["seconds"] < ITEM_SECONDS, (name, r)
    slowest = max(rows.values(), key=lambda r: r["seconds"])
    print(f"\n{len(rows)} items under RLIMIT_AS {head['limit_mib']} MiB; slowest {slowest['name']} "
          f"{slowest['seconds']:.2f} s; peak RSS {max(r['maxrss_mib'] for r in rows.values()):.0f} MiB")


def test_cli_whole_corpus_in_one_call(tiny_bundle, tmp_path):
    paths = []
    for i, name in enumerate(NAMES):
        path = tmp_path / f"{i:03d}_{name}"
        path.write_bytes(corpus()[name].data)
        paths.append(path)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "inference", "whois", "--json", "--bundle", str(tiny_bundle),
                        *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert p.returncode == 1, p.stderr[-3000:]  # some pictures failed, the process did not
    assert "Traceback" not in p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["image"] for x in lines] == list(map(str, paths))
    for name, line in zip(NAMES, lines, strict=True):
        item = corpus()[name]
        if "error" in line:
            assert plain(line["error"]), (name, line)
            assert item.expect != "ok", (name, line)
        else:
            assert item.expect in ("ok", "any"), (name, line)
            assert isinstance(line["heads"], list)
    assert seconds < ITEM_SECONDS * 4 + 0.5 * len(NAMES), seconds
    print(f"\nCLI: {len(lines)} pictures in {seconds:.1f} s, {sum('error' in x for x in lines)} refused")


STATUS = {"ImageTooLargeError": 413, "NotAnImageError": 415}


async def test_http_api_every_item(tiny_pipeline):
    settings = Settings(ort_threads=1, queue_size=4)
    slowest = (0.0, "")
    async with TestClient(TestServer(create_app(tiny_pipeline, settings))) as client:
        for name in NAMES:
            item = corpus()[name]
            form = aiohttp.FormData()
            form.add_field("file", item.data, filename=name, content_type=content_type(name))
            t0 = time.perf_counter()
            r = await client.post("/detect?topN=2", data=form)
            seconds = time.perf_counter() - t0
            slowest = max(slowest, (seconds, name))
            assert r.status != 500 and r.content_type == "application/json", (name, r.status)
            body = await r.json()
            assert seconds < ITEM_SECONDS, (name, seconds)
            if r.status == 200:
                assert item.expect in ("ok", "any"), (name, body)
                assert set(body) == {"preds", "head_locs"}
            else:
                assert item.expect != "ok", (name, r.status, body)
                assert plain(body["error"]), (name, body)
                if item.error:
                    assert r.status == STATUS.get(item.error, 400), (name, r.status, body)
                else:
                    assert r.status in (400, 413, 415), (name, r.status, body)
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["pending"] == 0
    print(f"\nHTTP: {len(NAMES)} items, slowest {slowest[1]} {slowest[0]:.2f} s")
