"""Every way to trigger a recognition, end to end: SimCord runs discord.py's real code, the bot runs its real cogs
and the real (tiny) ONNX pipeline."""

from __future__ import annotations

import re

from bot_pictures import png

from service.storage import GuildSettings

LINE = re.compile(r"^\d+\. .+ · \d+\.\d%$")


def deferred_first(env) -> bool:
    """The last interaction was acknowledged with a defer (callback type 5) before its answer was sent."""
    callbacks = [e for e in env.http_requests if e.method == "POST" and e.path.endswith("/callback")]
    return bool(callbacks) and callbacks[-1].json.get("type") == 5


def replies(res):
    return [m for m in [res.response, *res.followups] if m is not None]


def assert_recognition(message, *, heads: int = 2, top: int = 3, spoiler: bool = False):
    """One picture's reply: an embed with a field per numbered head listing `top` names with probabilities,
    and the annotated picture attached."""
    assert len(message.embeds) == 1
    embed = message.embeds[0]
    assert len(embed.fields) == heads
    for number, field in enumerate(embed.fields, 1):
        assert field.name.startswith(f"Head #{number}")
        lines = field.value.splitlines()
        assert len(lines) == top
        assert all(LINE.match(line) for line in lines), lines
    assert len(message.attachments) == 1
    attachment = message.attachments[0]
    assert attachment.filename.startswith("SPOILER_") is spoiler
    assert attachment.filename.endswith((".png", ".jpg"))
    if spoiler:
        assert not embed.image.url  # an embed image cannot be spoilered, so the picture is only attached
    else:
        assert embed.image.url == f"attachment://{attachment.filename}"
    return embed


async def test_whois_slash_command_with_attachment(world, scene_bytes):
    res = await world.member.slash(world.channel, "whois", image=("fanart.jpg", scene_bytes))

    assert deferred_first(world.env) and not res.ephemeral
    (message,) = replies(res)
    embed = assert_recognition(message, heads=2, top=GuildSettings().top_k)
    assert "fanart.jpg" in embed.description and "2 heads found" in embed.description
    # display form: the tiny bundle's labels are Danbooru tags such as "c.c." and "aqua_(konosuba)"
    assert "_" not in embed.fields[0].value
    labels = [c["label"] for row in message.components for c in row["components"]]
    assert labels == ["More candidates"]


async def test_more_candidates_button_shows_the_invoker_top_10(world, scene_bytes):
    res = await world.member.slash(world.channel, "whois", image=("fanart.jpg", scene_bytes), top=1)
    message = res.response
    assert all(len(f.value.splitlines()) == 1 for f in message.embeds[0].fields)

    more = await world.member.click(message.message, label="More candidates")
    assert more.ephemeral
    fields = more.response.embeds[0].fields
    assert len(fields) == 2
    assert all(len(f.value.splitlines()) == 5 for f in fields)  # the tiny bundle knows 5 characters (< 10)

    other = await world.admin.click(message.message, label="More candidates")
    assert other.ephemeral and "Only the person who asked" in other.response.content


async def test_whois_private_and_top(world, scene_bytes):
    res = await world.member.slash(world.channel, "whois", image=("a.png", scene_bytes), private=True, top=5)
    assert res.ephemeral
    assert_recognition(res.response, heads=2, top=5)


async def test_spoiler_flag_is_kept(world, scene_bytes):
    res = await world.member.slash(world.channel, "whois", image=("SPOILER_ending.jpg", scene_bytes))
    embed = assert_recognition(res.response, heads=2, spoiler=True)
    assert all(line.startswith(f"{i}. ||") for f in embed.fields for i, line in enumerate(f.value.splitlines(), 1))


async def test_context_menu_on_a_message_with_several_pictures(world, scene_bytes):
    posted = await world.member.send(
        world.channel, "look", attachments=[("one.jpg", scene_bytes), ("two.png", png()), ("notes.txt", b"hi")]
    )

    res = await world.admin.context_menu(world.channel, "Who is this?", posted)

    assert deferred_first(world.env)
    messages = replies(res)
    assert [m.embeds[0].title for m in messages] == ["Picture 1 of 2", "Picture 2 of 2"]
    for m in messages:
        assert_recognition(m, heads=2)


async def test_context_menu_on_a_message_without_pictures(world):
    posted = await world.member.send(world.channel, "just text")
    res = await world.member.context_menu(world.channel, "Who is this?", posted)
    assert res.ephemeral and "no pictures" in res.response.content


async def test_reaction_trigger(world, scene_bytes):
    posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])

    await world.member.react(posted, "\N{LEFT-POINTING MAGNIFYING GLASS}")  # off by default: opt-in per guild
    assert world.channel.last_message.id == posted.id

    saved = await world.admin.slash(world.channel, "settings", reactions=True)
    assert saved.response.content == "Saved."
    await world.admin.react(posted, "\N{LEFT-POINTING MAGNIFYING GLASS}")

    reply = world.channel.last_message
    assert reply.author.id == world.env.bot.user.id
    assert reply.reference is not None and reply.reference.message_id == posted.id
    assert_recognition(reply, heads=2)

    await world.member.react(posted, "\N{THUMBS UP SIGN}")  # another emoji does nothing
    assert world.channel.last_message.id == reply.id


async def test_reaction_trigger_with_a_custom_emoji_setting(world, scene_bytes):
    await world.admin.slash(world.channel, "settings", reactions=True, emoji="\N{EYES}")
    posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    await world.member.react(posted, "\N{LEFT-POINTING MAGNIFYING GLASS}")
    assert world.channel.last_message.id == posted.id
    await world.member.react(posted, "\N{EYES}")
    assert world.channel.last_message.reference.message_id == posted.id


async def test_watched_channel(world, scene_bytes):
    other = world.guild.create_text_channel("general")
    res = await world.admin.slash(world.channel, "settings", watch=world.channel)
    assert world.channel.mention in res.response.embeds[0].fields[3].value

    await world.member.send(other, "", attachments=[("art.jpg", scene_bytes)])  # not watched
    assert other.last_message.author.id == world.member.id

    posted = await world.member.send(world.channel, "new art!", attachments=[("art.jpg", scene_bytes)])
    reply = world.channel.last_message
    assert reply.reference.message_id == posted.id
    assert_recognition(reply, heads=2)

    await world.member.send(world.channel, "no picture here")  # text only: no reply
    assert world.channel.last_message.author.id == world.member.id


async def test_watched_channel_ignores_bots(world, scene_bytes):
    await world.admin.slash(world.channel, "settings", watch=world.channel)
    robot = world.guild.add_member(world.env.create_user("otherbot", bot=True))
    await robot.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    assert world.channel.last_message.author.id == robot.id


async def test_without_the_message_content_intent(world, make_bot, scene_bytes):
    """The context menu needs no privileged intent; the reaction trigger cannot see pictures without it."""
    await world.env.restart_bot(make_bot(message_content=False))
    await world.admin.slash(world.channel, "settings", reactions=True)
    posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])

    res = await world.member.context_menu(world.channel, "Who is this?", posted)
    assert_recognition(res.response, heads=2)

    before = world.channel.last_message.id
    await world.member.react(posted, "\N{LEFT-POINTING MAGNIFYING GLASS}")
    assert world.channel.last_message.id == before  # Discord hid the attachment: nothing to answer
