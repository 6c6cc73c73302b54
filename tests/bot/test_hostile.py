"""Issue 7, bot side: hostile pictures, load and faults through the real bot (SimCord, real cogs, tiny ONNX).

- every item of the hostile corpus (tests/hostile/corpus.py) through /whois; a sample through the context menu
  and a watched channel: a result or a clear one-line message, in bounded time, never a crash;
- 200 /whois at once: every one answered (result or "busy"), the event loop measured by a lag monitor, nothing
  pending afterwards, the bot's in-memory state capped;
- Discord 403/404/429 on a trigger's reply, an exception inside one inference, a locked or corrupt settings
  database: logged, polite, and the bot keeps serving without losing other guilds' data;
- Manage Server on /settings, /teach and /forget; the token never in a log line or a user-facing message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time

import discord
import pytest

from bot import RedactToken
from cogs import recognition as recognition_cog
from hostile.corpus import corpus, encode, picture
from hostile.looplag import HARD_BUSY, HARD_LAG, LagMonitor, strict
from inference.settings import Settings, cpu_count
from service.config import BotConfig
from service.storage import DB_NAME

ITEM_SECONDS = 5.0  # generous bound per picture on a busy 2-core box (the slowest takes ~1 s)
NAMES = sorted(corpus())
# One of each kind: nothing, not a picture, bombs, damaged, chunk bombs, animations, big legal, EXIF, modes.
SAMPLE = [
    "zero_bytes.jpg", "svg.png", "bomb_png_real_7000x7000.png", "bomb_jpeg_60000x60000.jpg", "truncated_half.png",
    "png_ztxt_bomb.png", "gif_1000_frames.gif", "big_6000x6000_rgba.png", "exif_orientation_6.jpg", "cmyk.jpg",
    "1x1.png", "webp_chunk_lies.webp",
]
MAX_LAG = 0.100
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.SECRET.hostile-test-token"
BUSY = "I'm busy with other pictures right now, try again in a moment."


@pytest.fixture
def bot_settings(tiny_bundle, tmp_path) -> Settings:
    # the shipped defaults: one worker, a queue of 8
    return Settings(bundle_dir=tiny_bundle, ort_threads=1, workers=1, queue_size=8)


@pytest.fixture
def bot_config(tmp_path) -> BotConfig:
    return BotConfig(discord_token=TOKEN, data_dir=tmp_path / "data", message_content=True, user_cooldown=(0, 0.0),
                     guild_cooldown=(0, 0.0))


def replies(res):
    return [m for m in [res.response, *res.followups] if m is not None]


def text_of(message) -> str:
    return message.embeds[0].description if message.embeds and message.embeds[0].description else message.content


def plain(text: str) -> bool:
    """One short line a user can be shown: no traceback, no path, no token."""
    line = text.split(": ", 1)[-1]
    return bool(line) and "\n" not in line and len(line) < 300 and "Traceback" not in text and "/work" not in text \
        and TOKEN not in text


def outcome(message) -> str:
    """'ok' for a recognition reply (heads or 'no head found', with the annotated picture), 'error' for the
    'couldn't read' notice; anything else fails."""
    embed = message.embeds[0] if message.embeds else None
    if embed is not None and message.attachments and (embed.fields or "No head found" in (embed.description or "")):
        return "ok"
    text = text_of(message) or ""
    assert "I couldn't read that picture: " in text and not message.attachments, text
    assert plain(text), text
    return "error"


def check(name: str, got: str) -> None:
    expect = corpus()[name].expect
    if expect == "ok":
        assert got == "ok", name
    elif expect != "any":
        assert got == "error", name


def live_views(bot) -> set:
    store = bot._connection._view_store
    return {item.view for items in store._views.values() for item in items.values()}


# -- hostile pictures ------------------------------------------------------------------------------------------
async def test_every_hostile_picture_through_whois(world, scene_bytes):
    slowest = (0.0, "")
    t_all = time.perf_counter()
    with LagMonitor(owners=True) as lag:  # bombs and 1,000-frame GIFs are decoded off the loop
        for name in NAMES:
            t0 = time.perf_counter()
            res = await world.member.slash(world.channel, "whois", image=(name, corpus()[name].data))
            seconds = time.perf_counter() - t0
            slowest = max(slowest, (seconds, name))
            assert seconds < ITEM_SECONDS, (name, seconds)
            (message,) = replies(res)  # exactly one answer per picture
            check(name, outcome(message))
    assert lag.max_step_wall_by["service"] < MAX_LAG, f"a bot step blocked the loop: {lag.by_owner()}"
    assert lag.max_busy_by["service"] < MAX_LAG, f"the bot's steps held the loop: {lag.by_owner()}"
    assert world.env.errors == []  # nothing reached the error handlers: every item was handled in the cog
    assert world.env.bot.recognizer.pending == 0
    good = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert good.response.embeds[0].fields and good.response.attachments
    print(f"\n{len(NAMES)} hostile pictures through /whois in {time.perf_counter() - t_all:.1f} s, "
          f"slowest {slowest[1]} {slowest[0]:.2f} s; loop by owner: {lag.by_owner()}")


async def test_hostile_sample_through_the_menu_and_a_watched_channel(world, scene_bytes):
    await world.admin.slash(world.channel, "settings", watch=world.channel)
    other = world.guild.create_text_channel("other")
    groups = [SAMPLE[i : i + 4] for i in range(0, len(SAMPLE), 4)]  # MAX_PICTURES per message
    for group in groups:
        files = [(name, corpus()[name].data) for name in group]
        # the context menu, on a message in an unwatched channel
        posted = await world.member.send(other, "", attachments=files)
        t0 = time.perf_counter()
        res = await world.member.context_menu(other, "Who is this?", posted)
        assert time.perf_counter() - t0 < ITEM_SECONDS * len(group)
        messages = replies(res)
        assert len(messages) == len(group)
        for index, (name, message) in enumerate(zip(group, messages), 1):
            if message.embeds and message.embeds[0].title:
                assert message.embeds[0].title == f"Picture {index} of {len(group)}"
            else:
                assert text_of(message).startswith(f"Picture {index}: ")
            check(name, outcome(message))
        # a watched channel: one reply per picture, each replying to the post
        t0 = time.perf_counter()
        posted = await world.member.send(world.channel, "", attachments=files)
        assert time.perf_counter() - t0 < ITEM_SECONDS * len(group)
        answers = [m for m in world.channel.history() if m.reference and m.reference.message_id == posted.id]
        assert len(answers) == len(group)
        for name, message in zip(group, sorted(answers, key=lambda m: m.id)):
            check(name, outcome(message))
    assert world.env.errors == []
    good = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    assert world.channel.last_message.reference.message_id == good.id
    assert world.channel.last_message.embeds[0].fields


# -- load ------------------------------------------------------------------------------------------------------
def answers_sent(env) -> int:
    return sum(1 for r in env.http_requests if r.method == "POST" and r.path.startswith("/webhooks/"))


async def burst(world, members, picture_bytes: bytes, n: int, monkeypatch, lag: LagMonitor | None = None) -> list:
    """n /whois in flight at once. SimCord runs one operation at a time and waits for the bot after each, so
    the interactions are dispatched without waiting (yielding to the loop between them), then awaited until
    every one got its answer; only then SimCord settles (outside the measured window: its bookkeeping over
    200 tasks runs on the same loop and is not the bot's work)."""
    env = world.env
    sent = answers_sent(env)

    async def no_wait(**kwargs):
        return None

    results = []
    with monkeypatch.context() as m:
        m.setattr(env, "_settle_internal", no_wait)
        for i in range(n):
            results.append(await members[i % len(members)].slash(world.channel, "whois",
                                                                  image=(f"p{i}.jpg", picture_bytes)))
            await asyncio.sleep(0)
        deadline = time.monotonic() + 120
        while answers_sent(env) < sent + n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    if lag is not None:
        lag.__exit__()
    await env.settle(timeout=120)
    return results


async def test_200_concurrent_whois(world, monkeypatch):
    bot = world.env.bot
    members = [world.member] + [world.guild.add_member(world.env.create_user(f"user{i}")) for i in range(9)]
    photo = encode(picture(1024, 768, seed=5), "JPEG", quality=90)  # decode + detect + embed: real work
    await burst(world, members, photo, 4, monkeypatch)  # warm-up
    report = []
    for _batch in range(2):
        with LagMonitor(owners=True) as lag:
            t0 = time.perf_counter()
            results = await burst(world, members, photo, 200, monkeypatch, lag)
            seconds = time.perf_counter() - t0
        answers = [replies(r) for r in results]
        assert all(len(a) == 1 for a in answers), [len(a) for a in answers]  # every request answered, once
        ok = [a[0] for a in answers if a[0].embeds and a[0].embeds[0].fields and a[0].attachments]
        busy = [a[0] for a in answers if a[0].content == BUSY and not a[0].embeds]
        assert len(ok) + len(busy) == 200 and ok and busy
        assert bot.recognizer.pending == 0
        assert lag.samples > 10
        assert lag.max_lag < HARD_LAG, f"event loop late by {lag.max_lag * 1000:.0f} ms"
        assert lag.max_busy < HARD_BUSY, f"event loop blocked by work for {lag.max_busy * 1000:.0f} ms"
        # Issue 7's bound, asserted on every run: the bot's own steps (discord.py, cogs, service, inference; see
        # hostile/looplag.py) never held the loop for 100 ms, neither summed between two wake-ups of the monitor
        # (CPU time, so a busy CI box does not inflate it) nor in one step (wall time, so a blocking wait on the
        # loop, say a locked database or a sync download, would show even though it costs no CPU).
        service = "service"
        assert lag.steps_by[service] > 3 * 200, lag.by_owner()  # the bot's steps were seen: not vacuous
        assert lag.max_busy_by[service] < MAX_LAG, f"bot's steps held the loop: {lag.by_owner()}"
        assert lag.max_step_wall_by[service] < MAX_LAG, f"one bot step blocked the loop: {lag.by_owner()}"
        # Wall-clock lateness also counts SimCord's work on the same loop and other processes: asserted on request.
        if strict_now := strict(auto=False):
            assert lag.max_lag < MAX_LAG, f"event loop late by {lag.max_lag * 1000:.0f} ms"
        report.append(f"{len(ok)} results / {len(busy)} busy in {seconds:.2f} s, max loop lag "
                      f"{lag.max_lag * 1000:.1f} ms (blocked by work {lag.max_busy * 1000:.1f} ms) over {lag.samples} samples (load {os.getloadavg()[0]:.1f} on "
                      f"{cpu_count()} CPUs, strict {strict_now}); by owner: {lag.by_owner()}")
    assert world.env.errors == []
    # bounded state: each result keeps one live view (its buttons) until it times out, capped by the cog
    cog = bot.get_cog("Recognition")
    views = live_views(bot)
    assert 0 < len(views) <= recognition_cog.MAX_LIVE_VIEWS and len(cog.views) <= recognition_cog.MAX_LIVE_VIEWS
    assert all(view.result.image is None for view in views)  # no decoded pixels are kept
    await world.env.advance_time(601)  # the buttons time out: nothing stays behind
    assert live_views(bot) == set()
    print("\n" + "\n".join(report))


async def test_the_lag_monitor_catches_a_bot_step_that_blocks(world, scene_bytes, monkeypatch):
    """Not vacuous: a handler that waits 150 ms on the loop (as a locked database read would) is charged to the
    bot as one long step in wall time, although it costs no CPU."""
    storage = world.env.bot.storage
    real_get = storage.get

    def slow_get(guild_id):
        time.sleep(0.15)  # a blocking wait inside the bot's handler, on the event loop
        return real_get(guild_id)

    monkeypatch.setattr(storage, "get", slow_get)
    with LagMonitor(owners=True) as lag:
        res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert res.response.embeds[0].fields
    assert lag.max_step_wall_by["service"] >= 0.15, lag.by_owner()
    assert lag.max_busy_by["service"] < 0.1, lag.by_owner()  # sleeping is not work: the CPU view stays low
    assert lag.max_step_wall_by["simcord"] < 0.15 and lag.max_step_wall_by["test"] < 0.15, lag.by_owner()


async def test_live_views_and_handled_messages_are_capped(world, scene_bytes):
    cog = world.env.bot.get_cog("Recognition")
    cog.views.max_count = 3
    for i in range(5):
        await world.member.slash(world.channel, "whois", image=(f"a{i}.jpg", scene_bytes))
    assert len(cog.views) == 3 and len(live_views(world.env.bot)) == 3
    # pictures kept for "Try the whole picture" are capped in bytes too
    cog.views.max_count, cog.views.max_bytes = 100, 1
    blank = encode(picture(64, 64), "PNG")
    await world.member.slash(world.channel, "whois", image=("blank.png", blank), whole=False)
    assert cog.views.held <= len(blank)
    # an expired reply lost its buttons, like a timed-out one
    first = [m for m in world.channel.history() if m.author.id == world.env.bot.user.id][0]
    assert not first.components
    # the reaction / watch triggers remember at most HANDLED_CAP message ids
    assert cog.handled.cap == recognition_cog.HANDLED_CAP == 1000
    for message_id in range(cog.handled.cap + 500):
        cog.handled.first_time(message_id)
    assert len(cog.handled) == cog.handled.cap and not cog.handled.first_time(cog.handled.cap + 499)


# -- faults ----------------------------------------------------------------------------------------------------
MAGNIFIER = "\N{LEFT-POINTING MAGNIFYING GLASS}"


@pytest.mark.parametrize(("trigger", "status", "code"), [
    ("watch", 403, 50013), ("watch", 404, 10008), ("watch", 429, 0), ("reaction", 429, 0), ("reaction", 403, 50013),
])
async def test_discord_error_on_a_trigger_reply(world, scene_bytes, caplog, trigger, status, code):
    if trigger == "watch":
        await world.admin.slash(world.channel, "settings", watch=world.channel)
    else:
        await world.admin.slash(world.channel, "settings", reactions=True)
        posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    # every attempt fails (SimCord raises at once; discord.py would retry a 429 a few times first)
    world.env.inject_error("POST", f"/channels/{world.channel.id}/messages", status=status, code=code,
                           message="injected", times=10)
    with caplog.at_level(logging.INFO):
        if trigger == "watch":
            posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
        else:
            await world.admin.react(posted, MAGNIFIER)
        await world.env.settle(timeout=60)
    assert world.channel.last_message.id == posted.id  # no reply could be posted
    assert any(f"could not reply to message {posted.id}: {status}" in r.getMessage() for r in caplog.records)
    assert world.env.errors == []  # handled, not crashed
    world.env.backend.faults.clear()
    again = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    if trigger == "reaction":
        await world.admin.react(again, MAGNIFIER)
    assert world.channel.last_message.reference.message_id == again.id


async def test_an_exception_inside_one_inference(world, scene_bytes, caplog, monkeypatch):
    recognizer = world.env.bot.recognizer
    real = recognizer._recognize
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) in (1, 2):
            raise RuntimeError(f"model exploded ({TOKEN})")
        return real(*args)

    monkeypatch.setattr(recognizer, "_recognize", flaky)
    with caplog.at_level(logging.ERROR):
        res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
        assert text_of(res.response) == "Something went wrong on my side; it has been logged."
        assert TOKEN not in str(res.response.embeds[0].to_dict()) and not res.response.attachments
        # a watched channel: the failing picture gets a polite note, the next picture of the message its result
        await world.admin.slash(world.channel, "settings", watch=world.channel)
        posted = await world.member.send(world.channel, "", attachments=[("a.jpg", scene_bytes),
                                                                          ("b.jpg", scene_bytes)])
    answers = sorted((m for m in world.channel.history() if m.reference and m.reference.message_id == posted.id),
                     key=lambda m: m.id)
    assert text_of(answers[0]) == "Picture 1: Something went wrong on my side; it has been logged."
    assert answers[1].embeds[0].title == "Picture 2 of 2" and answers[1].embeds[0].fields
    assert sum("RuntimeError" in (r.exc_text or "") for r in caplog.records) == 2  # the operator sees both
    assert recognizer.pending == 0 and world.env.errors == []
    ok = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert ok.response.embeds[0].fields


async def test_a_locked_database_loses_no_guilds_data(world, make_bot, bot_config, simcord_env, caplog):
    other_guild = simcord_env.create_guild(name="Other Club")
    other_channel = other_guild.create_text_channel("art")
    mods = other_guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    other_admin = other_guild.add_member(simcord_env.create_user("other_admin"), roles=[mods])
    await world.env.bot.tree.sync()
    await world.admin.slash(world.channel, "settings", top=5)
    await other_admin.slash(other_channel, "settings", threshold=0.55, watch=other_channel)

    world.env.bot.storage.backend._db.execute("PRAGMA busy_timeout=50")
    blocker = sqlite3.connect(bot_config.data_dir / DB_NAME, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.ERROR):
            res = await world.admin.slash(world.channel, "settings", top=2)
        assert res.response.content == "Could not save the settings (the database is busy or damaged); try again."
        assert any("could not save settings of guild" in r.getMessage() for r in caplog.records)
        shown = await other_admin.slash(other_channel, "settings")  # the other guild is served as before
        assert shown.response.embeds[0].fields[0].value == "0.55"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await world.env.restart_bot(make_bot())  # nothing lost, nothing half-written
    assert (await world.admin.slash(world.channel, "settings")).response.embeds[0].fields[1].value == "5"
    shown = (await other_admin.slash(other_channel, "settings")).response.embeds[0]
    assert shown.fields[0].value == "0.55" and other_channel.mention in shown.fields[3].value


async def test_a_corrupt_database_means_defaults_and_keeps_the_file(make_bot, bot_config, simcord_env, scene_bytes,
                                                                    caplog):
    simcord_env.bot.storage.close()  # the running bot's database gets damaged on disk
    for leftover in bot_config.data_dir.glob(DB_NAME + "-*"):
        leftover.unlink()
    damaged = b"SQLite format 3\0" + b"\xde\xad" * 4000  # a damaged file: the operator may still recover it
    (bot_config.data_dir / DB_NAME).write_bytes(damaged)
    with caplog.at_level(logging.ERROR):
        await simcord_env.restart_bot(make_bot())
    assert any("unusable" in r.getMessage() for r in caplog.records)
    guild = simcord_env.create_guild(name="Club")
    channel = guild.create_text_channel("art")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(simcord_env.create_user("admin"), roles=[mods])
    await simcord_env.bot.tree.sync()
    res = await admin.slash(channel, "whois", image=("art.jpg", scene_bytes))
    assert res.response.embeds[0].fields  # recognition works, with the defaults
    shown = await admin.slash(channel, "settings")
    assert "database is unavailable" in shown.response.embeds[0].description
    refused = await admin.slash(channel, "settings", top=7)
    assert "nothing was saved" in refused.response.content
    assert (bot_config.data_dir / DB_NAME).read_bytes() == damaged  # never overwritten


# -- security --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("command", "options"), [
    ("settings", {"threshold": 0.5}), ("teach", {"character": "aqua", "image": ("a.png", b"x")}),
    ("forget", {"character": "aqua"}),
])
async def test_manage_server_is_checked_even_when_a_server_shows_the_command(world, command, options):
    world.guild.set_command_permissions(world.commands[command], {world.guild.default_role: True})
    res = await world.member.slash(world.channel, command, **options)
    assert res.ephemeral
    assert res.response.content == "You need the **Manage Server** permission to use this command."
    assert [type(e).__name__ for e in world.env.errors] == ["MissingPermissions"]


def test_the_token_is_redacted_from_tracebacks_too():
    """A library exception whose message carries the token: the traceback that the log handler prints is
    redacted (the filter runs before the formatter renders exc_text)."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactToken(TOKEN))
    logger = logging.getLogger("crystal_eyes.test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"login with {TOKEN} failed")
        except RuntimeError:
            logger.exception("gateway error for %s", TOKEN)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "RuntimeError: login with [token redacted] failed" in out
    assert "gateway error for [token redacted]" in out and TOKEN not in out


async def test_rate_limited_whois_reply(world, scene_bytes, caplog):
    """A 429 on the answer (SimCord raises it at once, as discord.py does once its retries are spent)."""
    world.env.inject_error("POST", "/webhooks/*", status=429, message="You are being rate limited.", times=1)
    with caplog.at_level(logging.WARNING, logger="crystal_eyes"):
        res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert [m.content for m in replies(res)] == ["Discord is rate-limiting me; try again in a moment."]
    assert any(r.getMessage().startswith(f"/whois by user {world.member.id}: HTTPException: 429")
               for r in caplog.records)
    assert [type(e.original).__name__ for e in world.env.errors] == ["HTTPException"]
    assert (await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))).response.embeds
