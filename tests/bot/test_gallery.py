"""/teach, /forget, /characters, /about."""

from __future__ import annotations

import pytest


def names_of(message) -> str:
    return "\n".join(f.value for f in message.embeds[0].fields)


async def test_teach_then_whois_then_forget(world, scene_bytes, bot_config):
    before = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert "Kiyo Girl" not in names_of(before.response)

    taught = await world.admin.slash(world.channel, "teach", character="Kiyo Girl (Test)", image=("kiyo.jpg", scene_bytes))
    assert taught.ephemeral
    # the name is kept as typed; the tag is derived from it and shown
    assert taught.followups == [] and "Learned **Kiyo Girl (Test)** (tag `kiyo_girl_(test)`)" in taught.response.content
    assert (bot_config.data_dir / "galleries" / f"{world.guild.id}.npz").is_file()

    after = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    embed = after.response.embeds[0]
    # the largest head was enrolled, so the same picture now names it first, marked as this server's
    assert any(f.value.startswith("1. **Kiyo Girl \\(Test\\)** (server gallery)") or
               f.value.startswith("1. **Kiyo Girl (Test)** (server gallery)") for f in embed.fields), embed.fields

    listed = await world.member.slash(world.channel, "characters")
    assert "Kiyo Girl (Test)" in listed.response.embeds[0].description
    assert "1 taught on this server" in listed.response.embeds[0].footer.text

    choices = await world.admin.autocomplete(world.channel, "forget", "character", "kiyo")
    assert [c["value"] for c in choices] == ["kiyo_girl_(test)"]

    forgot = await world.admin.slash(world.channel, "forget", character="kiyo_girl_(test)")
    assert "Forgot **Kiyo Girl — Test**" in forgot.response.content
    again = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    assert "Kiyo Girl" not in names_of(again.response)

    missing = await world.admin.slash(world.channel, "forget", character="Nobody")
    assert "never taught me" in missing.response.content


async def test_galleries_are_per_guild(world, scene_bytes):
    await world.admin.slash(world.channel, "teach", character="Local Hero", image=("kiyo.jpg", scene_bytes))
    other_guild = world.env.create_guild(name="Elsewhere")
    other_channel = other_guild.create_text_channel("art")
    stranger = other_guild.add_member(world.env.create_user("bob"))
    res = await stranger.slash(other_channel, "whois", image=("art.jpg", scene_bytes))
    assert "Local Hero" not in names_of(res.response)


async def test_teach_with_a_picture_that_is_not_a_picture(world):
    res = await world.admin.slash(world.channel, "teach", character="Someone", image=("face.png", b"not a png at all"))
    # the words of the error table (service/errors.py) for any unreadable picture, and the hint of /teach
    assert res.ephemeral and res.response.content.startswith("I couldn't read that picture:")
    assert res.response.content.endswith("Try again with `whole:True` if the picture is a head crop.")


@pytest.fixture
def pipeline(many_labels_pipeline):
    return many_labels_pipeline


async def test_characters_is_paginated(world):
    res = await world.member.slash(world.channel, "characters")
    assert res.ephemeral
    first = res.response.embeds[0]
    assert first.footer.text.startswith("Page 1/3") and "70 of the 70 characters the model knows" in first.footer.text
    assert "(7 works)" in first.footer.text
    assert len(first.description.splitlines()) == 25

    nxt = await world.member.click(res.response.message, label="Next")
    second = nxt.response.embeds[0]
    assert second.footer.text.startswith("Page 2/3") and second.description != first.description

    found = await world.member.slash(world.channel, "characters", search="character 012")
    assert found.response.embeds[0].description == "Character 012 — *Series 5*"

    # autocomplete offers matching names with their works; picking one shows that character alone
    choices = await world.member.autocomplete(world.channel, "characters", "search", "series 5")
    assert len(choices) >= 10 and all("— Series 5" in c["name"] for c in choices[:10])  # the 10 of that work first
    picked = await world.member.slash(world.channel, "characters", search=choices[0]["value"])
    assert picked.response.embeds[0].description.count("\n") == 0


async def test_about_shows_model_versions_and_counts(world):
    res = await world.member.slash(world.channel, "about")
    fields = {f.name: f.value for f in res.response.embeds[0].fields}
    assert fields["Model bundle"] == "tiny-test-bundle test"
    assert "`detector`: detector.onnx" in fields["Models"]
    assert fields["Characters (model)"] == "70"
    assert fields["Taught on this server"] == "0"
    assert fields["Message Content intent"] == "on"


async def test_teach_tells_how_well_the_character_is_recognised(world, scene_bytes):
    first = await world.admin.slash(world.channel, "teach", character="Kiyo Girl", image=("kiyo.jpg", scene_bytes),
                                    whole=True)
    # the words of the message table (inference/errors.py TEACH), the name as taught, in bold
    assert "Teach at least 1 more picture(s) of **Kiyo Girl** and I can tell you how well I recognise them." \
        in first.response.content
    second = await world.admin.slash(world.channel, "teach", character="Kiyo Girl", image=("kiyo.jpg", scene_bytes),
                                     whole=True)
    assert "(2 pictures of them now)" in second.response.content
    assert "Left out one at a time, 2 of its last 2 pictures are named **Kiyo Girl** (100%)." in second.response.content


async def test_teach_offers_the_known_character_the_shots_look_like(world, scene_bytes, monkeypatch, pipeline):
    from inference.result import Character
    from inference.teaching import TeachReport

    rem = Character("mal_118763", "Rem", "Re:Zero", None)
    monkeypatch.setattr(pipeline, "assess_taught", lambda gallery, tag, shots=None: TeachReport(tag, 3, 3, 3, rem, 3, 3))
    res = await world.admin.slash(world.channel, "teach", character="My_Waifu", image=("kiyo.jpg", scene_bytes))
    assert ("These pictures look like **Rem — Re:Zero**, whom I already know (I name them so for 3 of 3 without "
            "this server's characters). If that is who it is, there is no need to teach them: `/forget my_waifu` "
            "removes what was taught.") in res.response.content
