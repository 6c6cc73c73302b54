"""Several bot processes on one PostgreSQL database (DATABASE_URL), and gateway sharding (SHARD_COUNT/SHARD_IDS):
each process is a real bot in its own simulated Discord; what one is taught or told, the others know at once."""

from __future__ import annotations

import time

import discord
import pytest
import simcord

from bot import ShardedCrystalEyes, create_bot
from service.config import BotConfig

GUILD_ID = 4_194_304 * 1000  # (id >> 22) % 2 == 0: on shard 0 of 2


def names_of(message) -> str:
    return "\n".join(f.value for f in message.embeds[0].fields)


async def wait_until(predicate, timeout: float = 5.0) -> bool:
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def build_world(env: simcord.Env, *, shard_id: int | None = None):
    guild = env.create_guild(name="Fan Art Club", id=GUILD_ID, **({} if shard_id is None else {"shard_id": shard_id}))
    channel = guild.create_text_channel("art")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(env.create_user("admin"), roles=[mods])
    member = guild.add_member(env.create_user("alice"))
    return channel, admin, member


class OtherProcess:
    """A second bot with its own simulated Discord on its own thread and event loop (SimCord runs one live Env
    per loop): as another process would be. `await other.run(coro_fn)` runs `coro_fn()` on its loop."""

    def __init__(self, bot) -> None:
        import asyncio
        import threading

        self.bot = bot
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.env = None

    async def run(self, coro_fn):
        import asyncio

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro_fn(), self.loop))

    async def start(self):
        async def go():
            self.env = simcord.Env(self.bot)
            await self.env.start()
            return build_world(self.env)

        world = await self.run(go)
        await self.run(self.env.bot.tree.sync)
        return world

    async def stop(self):
        if self.env is not None:
            await self.run(self.env.shutdown)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def scaled_config(bot_config, database_url):
    def config(**changes):
        return BotConfig(**{**bot_config.__dict__, "database_url": database_url, **changes})

    return config


@pytest.fixture
def make_process(bot_settings, pipeline, scaled_config):
    """`make_process(**config)` builds a bot on the shared database; each one is released at the end (SimCord's
    shutdown leaves the bot itself alone), and no PostgreSQL listener thread may outlive the test."""
    import threading

    made = []

    def make(**changes):
        made.append(create_bot(bot_settings, pipeline=pipeline, config=scaled_config(**changes)))
        return made[-1]

    yield make
    for bot in made:
        bot.release()
    assert not [t for t in threading.enumerate() if t.name == "crystal-eyes-pg-listener"]


async def start_two(make_process, **changes):
    """Two processes on one database: this loop's bot in `env`, and an OtherProcess; both worlds built."""
    env = simcord.Env(make_process(**changes))
    await env.start()
    other = OtherProcess(make_process(**changes))
    world_a = build_world(env)
    await env.bot.tree.sync()
    world_b = await other.start()
    return env, other, world_a, world_b


async def test_two_processes_share_galleries_and_settings(make_process, bot_config, scene_bytes):
    env, other, (ch_a, admin_a, _), (ch_b, admin_b, member_b) = await start_two(make_process)
    bots = [env.bot, other.bot]
    try:
        before = await other.run(lambda: member_b.slash(ch_b, "whois", image=("art.jpg", scene_bytes)))
        assert "Kiyo Girl" not in names_of(before.response)

        taught = await admin_a.slash(ch_a, "teach", character="Kiyo Girl (Test)", image=("kiyo.jpg", scene_bytes))
        assert "Learned **Kiyo Girl (Test)**" in taught.response.content
        assert not (bot_config.data_dir / "galleries").exists()  # stored in PostgreSQL, not in DATA_DIR
        assert await wait_until(lambda: bots[1].galleries.names(GUILD_ID) == ["kiyo_girl_(test)"])
        after = await other.run(lambda: member_b.slash(ch_b, "whois", image=("art.jpg", scene_bytes)))
        assert "Kiyo Girl" in names_of(after.response).splitlines()[0]

        saved = await admin_a.slash(ch_a, "settings", top=2)
        assert saved.response.content == "Saved."
        assert await wait_until(lambda: bots[1].storage.get(GUILD_ID).top_k == 2)
        shown = await other.run(lambda: admin_b.slash(ch_b, "settings"))
        assert {f.name: f.value for f in shown.response.embeds[0].fields}["Names per head"] == "2"

        forgot = await other.run(lambda: admin_b.slash(ch_b, "forget", character="kiyo_girl_(test)"))
        assert "Forgot" in forgot.response.content
        assert await wait_until(lambda: bots[0].galleries.names(GUILD_ID) == [])
    finally:
        await other.stop()
        await env.shutdown()


async def test_cooldowns_are_shared_between_processes(make_process, scene_bytes):
    env, other, (channel, _, member), (ch_b, _, member_b) = await start_two(make_process, user_cooldown=(1, 60.0))
    try:
        first = await member.slash(channel, "whois", image=("art.jpg", scene_bytes))
        assert first.response.embeds
        # the same user (same id in both simulated Discords) on the other process: already used up
        assert member_b.id == member.id
        second = await other.run(lambda: member_b.slash(ch_b, "whois", image=("art.jpg", scene_bytes)))
        assert second.response.content.startswith("Slow down a little")
    finally:
        await other.stop()
        await env.shutdown()


async def test_a_sharded_process_runs_its_shards_and_keeps_what_was_taught(make_process, scene_bytes):
    sharded = make_process(shard_count=2, shard_ids=(0,))
    assert isinstance(sharded, ShardedCrystalEyes) and sharded.shard_ids == [0] and sharded.shard_count == 2
    env = simcord.Env(sharded)
    await env.start()
    try:
        channel, admin, member = build_world(env, shard_id=0)
        await env.bot.tree.sync()
        await admin.slash(channel, "teach", character="Kiyo Girl (Test)", image=("kiyo.jpg", scene_bytes))
        # the shards are redistributed: a new process now serves every shard of this guild's data
        await env.restart_bot(make_process(shard_count=2, shard_ids=(0, 1)))
        assert env.bot.shard_ids == [0, 1]
        named = await member.slash(channel, "whois", image=("art.jpg", scene_bytes))
        assert "Kiyo Girl" in names_of(named.response).splitlines()[0]
    finally:
        await env.shutdown()


def test_shard_settings_are_checked():
    with pytest.raises(ValueError, match="SHARD_IDS needs SHARD_COUNT"):
        BotConfig(shard_ids=(0,))
    with pytest.raises(ValueError, match="between 0 and 1"):
        BotConfig(shard_count=2, shard_ids=(2,))
    with pytest.raises(ValueError, match="postgresql://"):
        BotConfig(database_url="mysql://x")
