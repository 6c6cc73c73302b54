"""Pictures behind links: `/whois url:` and image embeds under the context menu. A local web server stands in
for the internet; the bot's fetcher is the real one, configured (as in tests/service/test_fetch.py) to treat
127.0.0.1 as public and allow http, so its other rules still apply."""

from __future__ import annotations

import discord
import pytest
from aiohttp import web

from netfakes import FakeResolver
from service.fetch import SafeFetcher, is_public_address


@pytest.fixture
async def images(world, scene_bytes):
    async def picture(request):
        return web.Response(body=scene_bytes, content_type="image/jpeg")

    async def redirect(request):
        raise web.HTTPFound(request.query["to"])

    async def page(request):
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/art.jpg", picture)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/page", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    bot = world.env.bot
    real = bot.fetcher
    bot.fetcher = SafeFetcher(
        bot.config.url_max_bytes,
        resolver=FakeResolver({"art.test": "127.0.0.1", "intranet.test": "192.168.1.10"}),
        is_public=lambda ip: ip == "127.0.0.1" or is_public_address(ip),
        schemes=frozenset({"http", "https"}),
        allowed_ports=frozenset({None, port}),
    )
    yield f"http://art.test:{port}"
    await bot.fetcher.close()
    bot.fetcher = real
    await runner.cleanup()


async def test_whois_with_a_url(world, images):
    res = await world.member.slash(world.channel, "whois", url=f"{images}/art.jpg")
    embed = res.response.embeds[0]
    assert len(embed.fields) == 2 and f"{images}/art.jpg" in embed.description
    assert res.response.attachments


async def test_whois_url_redirecting_inside_the_network_is_refused(world, images):
    port = images.rsplit(":", 1)[1]
    res = await world.member.slash(world.channel, "whois", url=f"{images}/redirect?to=http://intranet.test:{port}/x")
    assert "private or local address" in res.response.embeds[0].description


async def test_whois_url_that_is_not_a_picture(world, images):
    res = await world.member.slash(world.channel, "whois", url=f"{images}/page")
    assert "not a picture" in res.response.embeds[0].description


async def test_context_menu_reads_image_embeds(world, images, scene_bytes):
    hook = world.guild.create_webhook(world.channel, "Art Feed")
    posted = await hook.send(
        embeds=[discord.Embed(title="new art").set_image(url=f"{images}/art.jpg")], attachments=[("a.jpg", scene_bytes)]
    )
    res = await world.member.context_menu(world.channel, "Who is this?", posted)
    messages = [res.response, *res.followups]
    assert [m.embeds[0].title for m in messages] == ["Picture 1 of 2", "Picture 2 of 2"]
    assert f"{images}/art.jpg" in messages[1].embeds[0].description
    assert all(len(m.embeds[0].fields) == 2 for m in messages)


async def test_watched_channel_answers_a_link_once_its_preview_arrives(world, images):
    await world.admin.slash(world.channel, "settings", watch=world.channel)
    posted = await world.member.send(world.channel, f"look {images}/art.jpg")
    assert world.channel.last_message.id == posted.id  # no picture yet
    # Discord unfurls the link a moment later: a MESSAGE_UPDATE adds the image embed. (SimCord has no public verb
    # for an unfurl, so the test edits the stored message the way Discord does.)
    preview = discord.Embed(url=f"{images}/art.jpg", type="image").set_thumbnail(url=f"{images}/art.jpg")
    world.env.backend.edit_message(world.channel.id, posted.id, {"embeds": [preview.to_dict()]})
    await world.env.settle()
    reply = world.channel.last_message
    assert reply.reference is not None and reply.reference.message_id == posted.id
    assert len(reply.embeds[0].fields) == 2
