"""The safe URL fetcher, against a local aiohttp server. The test fetcher allows http and any port, and treats
127.0.0.1 as public; a fake resolver maps test host names to addresses, so every rule runs without internet."""

from __future__ import annotations

import pytest
from aiohttp import web

from netfakes import FakeResolver
from service.fetch import FetchError, SafeFetcher, is_public_address

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100




@pytest.fixture
async def server():
    async def image(request):
        return web.Response(body=PNG, content_type="image/png")

    async def html(request):
        return web.Response(text="<html></html>", content_type="text/html")

    async def big(request):
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})  # no Content-Length: chunked
        await resp.prepare(request)
        for _ in range(50):
            await resp.write(b"\xff" * 4096)
        return resp

    async def redirect(request):
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_get("/img.png", image)
    app.router.add_get("/page", html)
    app.router.add_get("/big.jpg", big)
    app.router.add_get("/redirect", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port
    await runner.cleanup()


@pytest.fixture
async def fetcher():
    resolver = FakeResolver({"good.test": "127.0.0.1", "evil.test": "10.0.0.7", "meta.test": "169.254.169.254"})
    f = SafeFetcher(
        100_000,
        resolver=resolver,
        is_public=lambda ip: ip == "127.0.0.1" or is_public_address(ip),
        schemes=frozenset({"http", "https"}),
        allowed_ports=frozenset(range(1, 65536)) | {None},
        timeout=5,
    )
    f.resolver = resolver
    yield f
    await f.close()


async def test_fetches_a_picture(server, fetcher):
    data, ctype = await fetcher.fetch(f"http://good.test:{server}/img.png")
    assert data == PNG and ctype == "image/png"


async def test_follows_a_safe_redirect(server, fetcher):
    data, _ = await fetcher.fetch(f"http://good.test:{server}/redirect?to=/img.png")
    assert data == PNG


async def test_a_redirect_to_a_private_address_is_refused(server, fetcher):
    with pytest.raises(FetchError, match="private or local"):
        await fetcher.fetch(f"http://good.test:{server}/redirect?to=http://evil.test:{server}/img.png")
    assert fetcher.resolver.asked[-1] == "evil.test"  # refused at resolution, before any connection to it
    with pytest.raises(FetchError, match="private or local"):
        await fetcher.fetch(f"http://good.test:{server}/redirect?to=http://169.254.169.254/latest/meta-data")
    with pytest.raises(FetchError, match="private or local"):
        await fetcher.fetch(f"http://good.test:{server}/redirect?to=http://meta.test/")


async def test_a_host_resolving_to_a_private_address_is_refused(server, fetcher):
    with pytest.raises(FetchError, match="private or local"):
        await fetcher.fetch(f"http://evil.test:{server}/img.png")
    with pytest.raises(FetchError, match="Could not find"):
        await fetcher.fetch(f"http://unknown.test:{server}/img.png")


async def test_only_image_content(server, fetcher):
    with pytest.raises(FetchError, match="not a picture"):
        await fetcher.fetch(f"http://good.test:{server}/page")


async def test_the_size_cap_holds_while_streaming(server, fetcher):
    with pytest.raises(FetchError, match="too big"):
        await fetcher.fetch(f"http://good.test:{server}/big.jpg")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/a.png", "Only https://"),
        ("ftp://example.com/a.png", "Only https://"),
        ("https://user:pw@example.com/a.png", "user name or password"),
        ("https://example.com:8080/a.png", "standard https port"),
        ("https://10.1.2.3/a.png", "private or local"),
        ("https://192.168.0.1/a.png", "private or local"),
        ("https://[fe80::1]/a.png", "private or local"),
        ("https://[::ffff:127.0.0.1]/a.png", "private or local"),
        ("https://0.0.0.0/a.png", "private or local"),
        ("https://localhost/a.png", "private or local"),
        ("https:///a.png", "no host"),
    ],
)
def test_production_url_rules(url, message):
    with pytest.raises(FetchError, match=message):
        SafeFetcher(1000).check_url(url)


def test_production_accepts_public_https():
    assert SafeFetcher(1000).check_url("https://example.com/a.png") == "https://example.com/a.png"
    assert SafeFetcher(1000).check_url("https://8.8.8.8:443/a.png")


@pytest.mark.parametrize(
    ("ip", "public"),
    [("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.0.0.1", False),
     ("172.16.5.4", False), ("100.64.0.1", False), ("169.254.169.254", False), ("::1", False), ("fc00::1", False),
     ("::ffff:10.0.0.1", False), ("224.0.0.1", False), ("240.0.0.1", False), ("0.0.0.0", False), ("nonsense", False)],
)
def test_is_public_address(ip, public):
    assert is_public_address(ip) is public
