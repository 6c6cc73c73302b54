"""SimCord fixtures: the real bot (real cogs, real tiny ONNX pipeline) against an offline simulated Discord."""

from __future__ import annotations

import io
from dataclasses import dataclass

import discord
import numpy as np
import pytest
from PIL import Image

from bot import create_bot
from inference.settings import Settings
from service.config import BotConfig


@pytest.fixture
def bot_settings(tiny_bundle, tmp_path) -> Settings:
    return Settings(
        bundle_dir=tiny_bundle, data_dir=tmp_path / "data", ort_threads=1, workers=1, queue_size=2, top_k=3,
        unsure_threshold=0.30,
    )


@pytest.fixture
def bot_config() -> BotConfig:
    return BotConfig(message_content=True, user_cooldown=(50, 60.0), guild_cooldown=(500, 60.0))


@pytest.fixture
def make_bot(bot_settings, bot_config, tiny_pipeline):
    """Build a fresh bot on the same settings (and data directory): what a restart does."""

    def make(**config_changes):
        config = bot_config if not config_changes else BotConfig(**{**bot_config.__dict__, **config_changes})
        return create_bot(bot_settings, pipeline=tiny_pipeline, config=config)

    return make


@pytest.fixture
def simcord_bot(make_bot):
    return make_bot()


@dataclass
class World:
    env: object
    guild: object
    channel: object
    admin: object
    member: object


@pytest.fixture
async def world(simcord_env) -> World:
    env = simcord_env
    guild = env.create_guild(name="Fan Art Club")
    channel = guild.create_text_channel("art")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(env.create_user("admin"), roles=[mods])
    member = guild.add_member(env.create_user("alice"))
    await env.bot.tree.sync()
    return World(env, guild, channel, admin, member)


def png(width: int = 320, height: int = 240, colour=(200, 120, 160)) -> bytes:
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:] = colour
    arr[height // 4 : height // 2, width // 4 : width // 2] = (30, 30, 90)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
