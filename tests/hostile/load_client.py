"""Load generator for tests/hostile/test_api_load_faults.py, in its own process (as real clients are):
    python tests/hostile/load_client.py URL PICTURE N
sends N concurrent multipart requests (no client-side connection cap) and prints one JSON line per
response: {"status": ..., "keys": [...], "error": ..., "retry_after": ..., "seconds": ...}."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp


async def main(url: str, data: bytes, n: int) -> None:
    async def one(session):
        form = aiohttp.FormData()
        form.add_field("file", data, filename="p.jpg", content_type="image/jpeg")
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=form) as r:
                body = await r.json()
                return {"status": r.status, "keys": sorted(body), "error": body.get("error"),
                        "retry_after": r.headers.get("Retry-After"), "seconds": time.perf_counter() - t0}
        except Exception as e:  # an unanswered request is reported, not raised
            return {"status": None, "keys": [], "error": f"{type(e).__name__}: {e}", "retry_after": None,
                    "seconds": time.perf_counter() - t0}

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        for r in await asyncio.gather(*(one(session) for _ in range(n))):
            print(json.dumps(r))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]).read_bytes(), int(sys.argv[3])))
