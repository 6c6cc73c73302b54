"""The bot with INFERENCE_URL: its pictures are recognised by the recognition service (a Ray Serve deployment on
a local Ray cluster, inference/adapters/serve.py) and the bot opens no model itself; a service that is down gets the busy
answer, and the bot keeps serving."""

from __future__ import annotations

import pytest

from service.config import BotConfig
from service.remote import RemoteModel, RemoteRecognizer


def names_of(message) -> list[str]:
    return [line for f in message.embeds[0].fields for line in f.value.splitlines()]


@pytest.fixture(scope="module")
def service_url(ray_serve, tiny_bundle):
    return ray_serve(tiny_bundle)


@pytest.fixture
def bot_config(service_url, tmp_path) -> BotConfig:
    return BotConfig(data_dir=tmp_path / "data", message_content=True, user_cooldown=(50, 60.0), guild_cooldown=(500, 60.0),
                     inference_url=service_url, inference_timeout=10.0, inference_retries=1)


@pytest.fixture
def pipeline(bot_settings, bot_config):
    return RemoteModel.connect(bot_settings, bot_config)


async def test_whois_and_teach_through_the_service(world, tiny_pipeline, scene_bytes):
    bot = world.env.bot
    assert isinstance(bot.recognizer, RemoteRecognizer) and bot.pipeline.bundle.sessions == {}
    res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    local = tiny_pipeline.recognize(scene_bytes, top_k=3)
    assert len(res.response.embeds[0].fields) == len(local.heads) > 0
    assert local.heads[0].top.display in names_of(res.response)[0]
    assert res.response.attachments and res.response.attachments[0].filename.endswith(".jpg")

    taught = await world.admin.slash(world.channel, "teach", character="Kiyo Girl (Test)",
                                     image=("kiyo.jpg", scene_bytes))
    assert "Learned **Kiyo Girl (Test)**" in taught.response.content
    named = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert "Kiyo Girl" in names_of(named.response)[0]  # the server's gallery went with the picture

    bad = await world.member.slash(world.channel, "whois", image=("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg"))
    text = bad.response.embeds[0].description if bad.response.embeds else bad.response.content
    assert text.startswith("I couldn't read that picture:")


async def test_a_service_that_is_down_gets_the_busy_answer(bot_settings, bot_config, scene_bytes):
    import simcord

    from bot import create_bot

    down = BotConfig(**{**bot_config.__dict__, "inference_url": "http://127.0.0.1:9", "inference_timeout": 0.5})
    bot = create_bot(bot_settings, config=down)  # loads the bundle's facts only, as in production
    assert bot.pipeline.client.url == "http://127.0.0.1:9"
    env = simcord.Env(bot)
    await env.start()
    try:
        guild = env.create_guild(name="Down")
        channel = guild.create_text_channel("art")
        member = guild.add_member(env.create_user("bob"))
        await env.bot.tree.sync()
        res = await member.slash(channel, "whois", image=("art.jpg", scene_bytes))
        assert res.response.content.startswith("The recognition service is busy or not answering")
        about = await member.slash(channel, "about")  # the bot is still there, and knows its bundle without it
        assert about.response.embeds and "Characters (model)" in [f.name for f in about.response.embeds[0].fields]
    finally:
        await env.shutdown()
        bot.release()
