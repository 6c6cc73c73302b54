"""Bad input and Discord errors: a short message to the user, a log line, and the bot keeps running."""

from __future__ import annotations

import logging

import pytest


def notice(res) -> str:
    return res.response.embeds[0].description if res.response.embeds else res.response.content


async def test_a_bad_picture_is_explained(world):
    res = await world.member.slash(world.channel, "whois", image=("broken.jpg", b"\xff\xd8\xff\xe0 this is not a jpeg"))
    assert notice(res).startswith("I couldn't read that picture:")
    assert not res.response.attachments
    res = await world.member.slash(world.channel, "whois", image=("empty.png", b""))
    assert notice(res).startswith("I couldn't read that picture:")


async def test_a_file_that_is_not_a_picture(world):
    res = await world.member.slash(world.channel, "whois", image=("notes.txt", b"hello"))
    assert res.ephemeral and "is not a picture" in notice(res)


async def test_a_bad_picture_among_good_ones(world, scene_bytes):
    posted = await world.member.send(world.channel, "", attachments=[("bad.png", b"nope"), ("good.jpg", scene_bytes)])
    res = await world.member.context_menu(world.channel, "Who is this?", posted)
    messages = [res.response, *res.followups]
    assert notice(res).startswith("Picture 1: I couldn't read that picture:")
    assert messages[1].embeds[0].title == "Picture 2 of 2" and len(messages[1].embeds[0].fields) == 2


async def test_whois_needs_a_picture_or_a_link(world):
    res = await world.member.slash(world.channel, "whois")
    assert res.ephemeral and "image:" in res.response.content and "url:" in res.response.content


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/a.png", "Only https:// links"),
        ("https://127.0.0.1/a.png", "private or local address"),
        ("https://[::1]/a.png", "private or local address"),
        ("https://169.254.169.254/latest/meta-data", "private or local address"),
        ("https://localhost/a.png", "private or local address"),
        ("https://example.com:8443/a.png", "standard https port"),
    ],
)
async def test_unsafe_links_are_refused_before_any_connection(world, url, message):
    res = await world.member.slash(world.channel, "whois", url=url)
    assert res.ephemeral and message in notice(res)


async def test_discord_errors_get_a_short_message_and_a_log_line(world, scene_bytes, caplog):
    # Discord refuses the bot's answer (e.g. Attach Files denied): the global handler tells the user.
    world.env.inject_error("POST", "/webhooks/*", status=403, code=50013, message="Missing Permissions", times=1)
    with caplog.at_level(logging.INFO, logger="crystal_eyes"):
        res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    messages = [m for m in [res.response, *res.followups] if m is not None]
    assert any("I'm missing a permission" in m.content for m in messages), messages
    assert any(r.getMessage().startswith(f"/whois by user {world.member.id}: Forbidden: 403")
               and r.levelno == logging.WARNING for r in caplog.records)  # one line, at the table's level
    errors = world.env.errors
    assert len(errors) == 1 and type(errors[0].original).__name__ == "Forbidden"

    ok = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))  # still alive
    assert ok.response.embeds[0].fields


async def test_owner_only_sync(world):
    bot = world.env.bot
    bot.owner_ids = {world.admin.id}  # what OWNER_IDS does
    await world.member.send(world.channel, f"<@{bot.user.id}> sync")
    assert world.channel.last_message.content == "Only the bot's owner can do this."
    assert [type(e).__name__ for e in world.env.errors] == ["NotOwner"]

    await world.admin.send(world.channel, f"<@{bot.user.id}> sync")
    assert world.channel.last_message.content == f"Synced {len(world.commands)} command(s) globally."
    await world.admin.send(world.channel, f"<@{bot.user.id}> sync guild")
    assert world.channel.last_message.content == f"Synced {len(world.commands)} command(s) to this server."
    await world.admin.send(world.channel, f"<@{bot.user.id}> sync clear")
    assert world.channel.last_message.content == "Synced 0 command(s) to this server (cleared)."
    await world.admin.send(world.channel, f"<@{bot.user.id}> sync everywhere")  # the table's usage line
    assert world.channel.last_message.content == "Usage: `@bot sync [global|guild|clear]`."
    assert [type(e).__name__ for e in world.env.errors][-1] == "BadLiteralArgument"


async def test_an_attachment_that_is_gone(world, scene_bytes, caplog):
    posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    # The CDN no longer serves the file (deleted, or an expired link). SimCord has no public verb for this, so
    # drop the blob from its fake CDN.
    world.env.backend.cdn._blobs.pop(posted.attachments[0].url)
    with caplog.at_level(logging.INFO, logger="crystal_eyes"):
        res = await world.member.context_menu(world.channel, "Who is this?", posted)
    messages = [m for m in [res.response, *res.followups] if m is not None]
    assert any("attachment is gone" in m.content for m in messages), messages
    assert any(r.getMessage().startswith(f"/Who is this? by user {world.member.id}: NotFound: 404")
               and r.levelno == logging.WARNING for r in caplog.records)
    assert type(world.env.errors[0].original).__name__ == "NotFound"


async def test_every_refusal_reads_as_the_error_table_says(world, scene_bytes):
    """Each request the bot turns down gets the table's words (service/errors.py), privately, and nothing else."""
    from dataclasses import replace

    from inference.decode import check_size
    from inference.errors import ImageError
    from service.errors import (
        NameWithoutLetters,
        NoPicture,
        NoPicturesInMessage,
        NotAnEmoji,
        NotAPicture,
        NotTaught,
        TeachNeedsAHead,
        explain,
    )

    def said(res) -> str:
        assert res.ephemeral and not res.followups
        return res.response.content

    member, admin, channel = world.member, world.admin, world.channel
    assert said(await member.slash(channel, "whois")) == explain(NoPicture())
    assert said(await member.slash(channel, "whois", image=("notes.txt", b"hello"))) == explain(
        NotAPicture("notes.txt"))
    plain = await member.send(channel, "no pictures here")
    assert said(await member.context_menu(channel, "Who is this?", plain)) == explain(NoPicturesInMessage())
    assert said(await admin.slash(channel, "teach", character="___", image=("a.jpg", scene_bytes))) == explain(
        NameWithoutLetters())
    assert said(await admin.slash(channel, "teach", character="Kiyo", image=("notes.txt", b"hello"))) == explain(
        NotAPicture("notes.txt"))
    assert said(await admin.slash(channel, "forget", character="Nobody")) == explain(NotTaught("Nobody"))
    assert said(await admin.slash(channel, "settings", emoji="hello")) == explain(NotAnEmoji("hello"))
    headless = await admin.slash(channel, "teach", character="Kiyo", image=("noise.png", b"\x89PNG\r\n\x1a\n broken"))
    hint = explain(TeachNeedsAHead(ImageError("the file is cut short")))
    assert hint == "I couldn't read that picture: the file is cut short Try again with `whole:True` if the picture is a head crop."
    assert said(headless).startswith("I couldn't read that picture:")
    assert said(headless).endswith(" Try again with `whole:True` if the picture is a head crop.")

    # /teach refuses a picture over MAX_IMAGE_BYTES before reading it, in the same words as /whois and the decoder
    bot = world.env.bot
    bot.settings = replace(bot.settings, max_image_bytes=1000)
    too_big = said(await admin.slash(channel, "teach", character="Kiyo", image=("big.jpg", scene_bytes)))
    with pytest.raises(ImageError) as caught:
        check_size(len(scene_bytes), 1000)
    assert too_big == explain(caught.value) and "too large" in too_big
    whois = await member.slash(channel, "whois", image=("big.jpg", scene_bytes))
    assert notice(whois) == too_big
