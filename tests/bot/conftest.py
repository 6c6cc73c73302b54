"""SimCord fixtures: the real bot (real cogs, real tiny ONNX pipeline) against an offline simulated Discord."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import discord
import numpy as np
import pytest

from bot import create_bot
from bundles import boxes_detector, make_tiny_bundle
from inference.pipeline import Pipeline
from inference.settings import Settings
from service.config import BotConfig


@pytest.fixture
def bot_settings(tiny_bundle, tmp_path) -> Settings:
    return Settings(
        bundle_dir=tiny_bundle, ort_threads=1, workers=1, queue_size=2, top_k=3,
        unsure_threshold=0.30,
    )


@pytest.fixture
def bot_config(tmp_path) -> BotConfig:
    return BotConfig(data_dir=tmp_path / "data", message_content=True, user_cooldown=(50, 60.0),
                     guild_cooldown=(500, 60.0))


@pytest.fixture
def pipeline(tiny_pipeline):
    """The pipeline the bot runs; a test module overrides this fixture to use another bundle."""
    return tiny_pipeline


@pytest.fixture(scope="session")
def nohead_pipeline(tmp_path_factory):
    """A tiny bundle whose detector finds nothing (every box is under the score threshold)."""
    directory = make_tiny_bundle(tmp_path_factory.mktemp("nohead_bundle"))
    boxes_detector(directory / "detector.onnx", rows=np.array([[40, 100, 120, 190, 0.05]], np.float32))
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["detector"]["sha256"] = hashlib.sha256((directory / "detector.onnx").read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return Pipeline.from_bundle(directory, Settings(ort_threads=1))


@pytest.fixture(scope="session")
def many_labels_pipeline(tmp_path_factory):
    labels = [f"character_{i:03d}_(series_{i % 7})" for i in range(70)]
    directory = make_tiny_bundle(tmp_path_factory.mktemp("many_labels_bundle"), labels=labels)
    return Pipeline.from_bundle(directory, Settings(ort_threads=1))


@pytest.fixture
def make_bot(bot_settings, bot_config, pipeline):
    """Build a fresh bot on the same settings (and data directory): what a restart does."""

    made = []

    def make(**config_changes):
        config = bot_config if not config_changes else BotConfig(**{**bot_config.__dict__, **config_changes})
        made.append(create_bot(bot_settings, pipeline=pipeline, config=config))
        return made[-1]

    yield make
    for bot in made:  # SimCord's shutdown leaves the bot alone: stop its workers and close its store
        bot.release()


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
    commands: dict


@pytest.fixture
async def world(simcord_env) -> World:
    env = simcord_env
    guild = env.create_guild(name="Fan Art Club")
    channel = guild.create_text_channel("art")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(env.create_user("admin"), roles=[mods])
    member = guild.add_member(env.create_user("alice"))
    synced = await env.bot.tree.sync()
    return World(env, guild, channel, admin, member, {c.name: c for c in synced})
