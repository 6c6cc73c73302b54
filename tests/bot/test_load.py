"""Cooldowns (per user, per guild, shared by every trigger) and the bounded inference queue."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.config import BotConfig


@pytest.fixture
def bot_config(tmp_path) -> BotConfig:
    return BotConfig(data_dir=tmp_path / "data", message_content=True, user_cooldown=(2, 60.0),
                     guild_cooldown=(3, 60.0))


def is_result(res) -> bool:
    return bool(res.response and res.response.embeds and res.response.embeds[0].fields)


async def test_per_user_and_per_guild_cooldowns(world, scene_bytes):
    picture = ("art.jpg", scene_bytes)
    assert is_result(await world.member.slash(world.channel, "whois", image=picture))
    assert is_result(await world.member.slash(world.channel, "whois", image=picture))

    limited = await world.member.slash(world.channel, "whois", image=picture)
    assert limited.ephemeral and limited.response.content.startswith("Slow down a little: try again in")
    posted = await world.member.send(world.channel, "", attachments=[picture])
    menu = await world.member.context_menu(world.channel, "Who is this?", posted)  # shared by every trigger
    assert menu.ephemeral and "Slow down" in menu.response.content
    assert [type(e).__name__ for e in world.env.errors] == ["CommandOnCooldown", "CommandOnCooldown"]

    # another user still has room, until the guild's budget (3 per minute) is spent
    assert is_result(await world.admin.slash(world.channel, "whois", image=picture))
    guild_limited = await world.admin.slash(world.channel, "whois", image=picture)
    assert "Slow down" in guild_limited.response.content
    assert [type(e).__name__ for e in world.env.errors] == ["CommandOnCooldown"] * 3

    await world.env.advance_time(61)
    assert is_result(await world.member.slash(world.channel, "whois", image=picture))


async def test_cooldown_applies_to_the_reaction_trigger(world, scene_bytes):
    await world.admin.slash(world.channel, "settings", reactions=True)
    posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    before = world.channel.last_message.id
    await world.member.react(posted, "\N{LEFT-POINTING MAGNIFYING GLASS}")
    assert world.channel.last_message.id == before  # limited: silently ignored
    await world.env.advance_time(61)
    await world.admin.react(posted, "\N{LEFT-POINTING MAGNIFYING GLASS}")
    assert world.channel.last_message.reference.message_id == posted.id


async def test_busy_queue_answers_instead_of_piling_up(world, scene_bytes, bot_settings):
    recognizer = world.env.bot.recognizer
    assert recognizer.capacity == bot_settings.workers + bot_settings.queue_size
    gate = threading.Event()
    # fill the worker and the queue with real jobs that wait on the gate
    blockers = [asyncio.ensure_future(recognizer.run(gate.wait, 10)) for _ in range(recognizer.capacity)]
    await asyncio.sleep(0)
    assert recognizer.pending == recognizer.capacity
    try:
        res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
        assert res.response.content == "I'm busy with other pictures right now, try again in a moment."
        assert not res.response.embeds and not res.response.attachments
        assert recognizer.pending == recognizer.capacity  # the refused request took no slot
    finally:
        gate.set()
        assert await asyncio.gather(*blockers) == [True] * len(blockers)
    assert recognizer.pending == 0
    assert is_result(await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes)))
