"""One failing cog never kills the bot."""

from __future__ import annotations

import pytest

import bot as bot_module


@pytest.fixture
def simcord_bot(make_bot, monkeypatch):
    monkeypatch.setattr(bot_module, "EXTENSIONS", ("cogs.does_not_exist", *bot_module.EXTENSIONS))
    return make_bot()


async def test_a_failing_extension_does_not_kill_the_bot(world, scene_bytes):
    bot = world.env.bot
    assert list(bot.failed_extensions) == ["cogs.does_not_exist"]
    assert set(bot.cogs) == {"Recognition", "Admin", "Gallery", "Owner"}
    res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert res.response.embeds[0].fields
