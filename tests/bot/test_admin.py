"""/settings: persisted in SQLite across a restart, Manage Server only, and honest about missing intents."""

from __future__ import annotations

import pytest
import simcord

from service.storage import DB_NAME


async def test_settings_persist_across_a_restart(world, make_bot, bot_config, scene_bytes):
    res = await world.admin.slash(
        world.channel, "settings", threshold=0.99, top=2, reactions=True, emoji="\N{EYES}", watch=world.channel
    )
    assert res.ephemeral and res.response.content == "Saved."
    assert (bot_config.data_dir / DB_NAME).is_file()

    await world.env.restart_bot(make_bot())

    shown = await world.admin.slash(world.channel, "settings")
    assert shown.response.content == ""
    fields = {f.name: f.value for f in shown.response.embeds[0].fields}
    assert fields["Not-sure threshold"] == "0.99"
    assert fields["Names per head"] == "2"
    assert fields["Reaction trigger"] == "on (\N{EYES})"
    assert fields["Watch channels"] == world.channel.mention

    # ...and the restarted bot acts on them: the watch channel answers, 2 names per head, none recognised
    posted = await world.member.send(world.channel, "", attachments=[("art.jpg", scene_bytes)])
    reply = world.channel.last_message
    assert reply.reference.message_id == posted.id
    embed = reply.embeds[0]
    assert [f.name for f in embed.fields] == ["Head #1 — I don't recognise this character",
                                              "Head #2 — I don't recognise this character"]
    # what it says instead (closest name, how to teach it), then the 2 closest names
    assert all(len(f.value.splitlines()) == 3 for f in embed.fields)
    assert all(f.value.startswith("I don't recognise this character — closest: ") and "/teach" in f.value
               for f in embed.fields)
    assert "2 not recognised" in embed.description


async def test_unwatch_and_reset(world):
    await world.admin.slash(world.channel, "settings", watch=world.channel, top=7)
    res = await world.admin.slash(world.channel, "settings", unwatch=world.channel)
    fields = {f.name: f.value for f in res.response.embeds[0].fields}
    assert fields["Watch channels"] == "none" and fields["Names per head"] == "7"
    res = await world.admin.slash(world.channel, "settings", reset=True)
    fields = {f.name: f.value for f in res.response.embeds[0].fields}
    assert fields["Names per head"] == "3" and fields["Reaction trigger"].startswith("off")


async def test_settings_rejects_a_non_emoji(world):
    res = await world.admin.slash(world.channel, "settings", emoji="hello")
    assert res.ephemeral and "not an emoji" in res.response.content
    shown = await world.admin.slash(world.channel, "settings")
    assert shown.response.embeds[0].fields[2].value.endswith("(\N{LEFT-POINTING MAGNIFYING GLASS})")


async def test_settings_is_hidden_from_members_without_manage_server(world):
    # Discord itself hides Manage-Server commands (default_member_permissions) from everyone else.
    with pytest.raises(simcord.SetupError, match="default-member-permissions"):
        await world.member.slash(world.channel, "settings", threshold=0.5)
    with pytest.raises(simcord.SetupError, match="default-member-permissions"):
        await world.member.slash(world.channel, "teach", character="x", image=("a.png", b"x"))


async def test_permission_denial_when_a_server_overrides_command_visibility(world):
    # A server can re-allow a command for everyone in its integration settings; the bot still checks.
    world.guild.set_command_permissions(world.commands["settings"], {world.guild.default_role: True})
    res = await world.member.slash(world.channel, "settings", threshold=0.5)
    assert res.ephemeral
    assert res.response.content == "You need the **Manage Server** permission to use this command."
    errors = world.env.errors
    assert len(errors) == 1 and type(errors[0]).__name__ == "MissingPermissions"
    shown = await world.admin.slash(world.channel, "settings")
    assert shown.response.embeds[0].fields[0].value == "0.30"  # nothing was saved


async def test_settings_says_when_the_message_content_intent_is_missing(world, make_bot):
    await world.env.restart_bot(make_bot(message_content=False))
    res = await world.admin.slash(world.channel, "settings", reactions=True)
    assert "without the Message Content intent" in res.response.embeds[0].description
    assert "MESSAGE_CONTENT_INTENT=true" in res.response.embeds[0].description


async def test_settings_has_no_intent_warning_when_the_intent_is_on(world):
    res = await world.admin.slash(world.channel, "settings")
    assert not res.response.embeds[0].description
