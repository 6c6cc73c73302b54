"""A DNS resolver for tests: host names map to addresses we choose (e.g. a public-looking name that
resolves to 127.0.0.1), so the URL fetcher's address checks are exercised without any real DNS."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver


class FakeResolver(AbstractResolver):
    def __init__(self, table: dict[str, str]):
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.asked.append(host)
        if host not in self.table:
            raise OSError("no such host")
        return [{"hostname": host, "host": self.table[host], "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass
