"""'No head found' is explained, with a way to retry on the whole picture (button or option)."""

from __future__ import annotations

import pytest


@pytest.fixture
def pipeline(nohead_pipeline):
    return nohead_pipeline


def button_labels(message) -> list[str]:
    return [c["label"] for row in message.components for c in row["components"]]


async def test_no_head_found_then_the_whole_picture_button(world, scene_bytes):
    res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes))
    embed = res.response.embeds[0]
    assert "**No head found**" in embed.description and "whole:True" in embed.description
    assert not embed.fields
    assert res.response.attachments  # the (unannotated) picture is still shown
    assert button_labels(res.response) == ["Try the whole picture"]

    denied = await world.admin.click(res.response.message, label="Try the whole picture")
    assert denied.ephemeral and "Only the person who asked" in denied.response.content

    retry = await world.member.click(res.response.message, label="Try the whole picture")
    whole = retry.response.embeds[0]
    assert "The whole picture, named as one head" in whole.description
    assert len(whole.fields) == 1 and len(whole.fields[0].value.splitlines()) == 3
    assert retry.response.attachments and not retry.ephemeral
    assert button_labels(retry.response) == ["More candidates"]
    # one retry per reply: the button is now disabled on the original answer
    original = world.channel.history()
    (answer,) = [m for m in original if m.id == res.response.id]
    assert [c.disabled for row in answer.components for c in row.children] == [True]


async def test_a_private_answer_retries_privately(world, scene_bytes):
    res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes), private=True)
    assert res.ephemeral and button_labels(res.response) == ["Try the whole picture"]
    retry = await world.member.click(res.response.message, label="Try the whole picture")
    assert retry.ephemeral and len(retry.response.embeds[0].fields) == 1


async def test_whole_option(world, scene_bytes):
    res = await world.member.slash(world.channel, "whois", image=("art.jpg", scene_bytes), whole=True)
    embed = res.response.embeds[0]
    assert len(embed.fields) == 1 and embed.fields[0].name.startswith("Head #1")
    assert button_labels(res.response) == ["More candidates"]


async def test_teach_needs_a_head_or_the_whole_option(world, scene_bytes):
    res = await world.admin.slash(world.channel, "teach", character="Someone", image=("a.jpg", scene_bytes))
    assert "No head found" in res.response.content and "whole:True" in res.response.content
    res = await world.admin.slash(world.channel, "teach", character="Someone", image=("a.jpg", scene_bytes), whole=True)
    assert res.response.content.startswith("Learned **Someone**")
