"""Fetch a picture from a user-given URL without letting the URL reach inside our network.

Rules: https only (port 443); the host name is resolved by us and *every* address must be public (no
private, loopback, link-local, multicast, reserved or unspecified address, IPv4-mapped ones included);
redirects are followed by hand (at most 5) and each hop is checked again; the connection goes to the address
we checked (our resolver is the connector's, so there is no second lookup to rebind); the content type must
be image/*; the body is capped while it streams.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
USER_AGENT = "CrystalEyesBot (+https://github.com/; picture fetcher)"


class FetchError(Exception):
    """The URL cannot be fetched; the message is user-safe."""


def is_public_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None and not is_public_address(str(mapped)):
            return False
        if ip.teredo is not None:
            return False
    return bool(
        ip.is_global
        and not ip.is_private
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_unspecified
    )


class PublicOnlyResolver(AbstractResolver):
    """Resolves with `inner` and refuses the host when any of its addresses is not public."""

    def __init__(self, inner: AbstractResolver | None = None, is_public: Callable[[str], bool] = is_public_address):
        self._inner = inner or aiohttp.ThreadedResolver()
        self._is_public = is_public

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        try:
            infos = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise FetchError(f"Could not find the host {host!r}.") from exc
        if not infos:
            raise FetchError(f"Could not find the host {host!r}.")
        bad = [i["host"] for i in infos if not self._is_public(i["host"])]
        if bad:
            log.info("refused url host %r: resolves to non-public address(es)", host)
            raise FetchError("That link points to a private or local address, which I don't fetch.")
        return infos

    async def close(self) -> None:
        await self._inner.close()


class SafeFetcher:
    def __init__(
        self,
        max_bytes: int,
        *,
        timeout: float = 15.0,
        resolver: AbstractResolver | None = None,
        is_public: Callable[[str], bool] = is_public_address,
        schemes: frozenset[str] = frozenset({"https"}),
        allowed_ports: frozenset[int | None] = frozenset({None, 443}),
    ) -> None:
        self.max_bytes = int(max_bytes)
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        self._inner_resolver = resolver
        self._is_public = is_public
        self._schemes = schemes
        self._ports = allowed_ports
        self._session: aiohttp.ClientSession | None = None

    def check_url(self, url: str) -> str:
        """Validate one URL (also every redirect target) before any connection; returns it."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise FetchError("That doesn't look like a valid link.") from exc
        if parts.scheme.lower() not in self._schemes:
            raise FetchError("Only https:// links to pictures are supported.")
        host = parts.hostname
        if not host:
            raise FetchError("That link has no host name.")
        if parts.username or parts.password:
            raise FetchError("Links with a user name or password are not supported.")
        if port not in self._ports:
            raise FetchError("Only links on the standard https port are supported.")
        try:
            ipaddress.ip_address(host.strip("[]"))
            literal = True
        except ValueError:
            literal = False
        if literal and not self._is_public(host.strip("[]")):
            raise FetchError("That link points to a private or local address, which I don't fetch.")
        if host.lower() in {"localhost", "localhost.localdomain"} or host.lower().endswith(".localhost"):
            raise FetchError("That link points to a private or local address, which I don't fetch.")
        return url

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=PublicOnlyResolver(self._inner_resolver, self._is_public),
                use_dns_cache=False,
                limit=8,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,  # never go through a proxy from the environment
                headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
            )
        return self._session

    async def fetch(self, url: str) -> tuple[bytes, str]:
        """Return (bytes, content type). Raises FetchError with a user-safe message."""
        session = self._get_session()
        current = self.check_url(url.strip())
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(current, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        location = resp.headers.get("Location")
                        if not location:
                            raise FetchError("The link redirects nowhere.")
                        current = self.check_url(urljoin(current, location))
                        continue
                    if resp.status != 200:
                        raise FetchError(f"The link answered HTTP {resp.status}.")
                    ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
                    if not ctype.startswith("image/"):
                        raise FetchError("That link is not a picture (its content type is not image/*).")
                    if resp.content_length is not None and resp.content_length > self.max_bytes:
                        raise FetchError(f"That picture is too big (the limit is {self.max_bytes // 1_000_000} MB).")
                    buf = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        buf += chunk
                        if len(buf) > self.max_bytes:
                            raise FetchError(
                                f"That picture is too big (the limit is {self.max_bytes // 1_000_000} MB)."
                            )
                    return bytes(buf), ctype
            raise FetchError("The link redirects too many times.")
        except FetchError:
            raise
        except TimeoutError as exc:
            raise FetchError("The link took too long to answer.") from exc
        except aiohttp.ClientError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, FetchError):
                raise cause from None
            for inner in (getattr(exc, "os_error", None), cause):
                if isinstance(inner, FetchError):
                    raise inner from None
            log.info("fetch of a user url failed: %s", type(exc).__name__)
            raise FetchError("Could not download that link.") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
