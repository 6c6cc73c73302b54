"""/characters filters by work: `kancolle` lists Kantai Collection's ship girls, not Azur Lane's namesakes."""

from __future__ import annotations

import pytest

from bundles import LABELS, make_tiny_bundle
from inference.pipeline import Pipeline
from inference.settings import Settings

SHIPS = ["fubuki", "shimakaze", "kongou", "hibiki", "akagi", "kaga", "yamato", "musashi", "shigure", "yuudachi",
         "inazuma", "ikazuchi", "akatsuki", "haruna", "kirishima", "hiei", "nagato", "mutsu", "zuikaku", "shoukaku",
         "taihou", "ooi", "kitakami", "tenryuu", "tatsuta", "suzuya", "kumano", "atago", "takao", "naka"]
KNOWN = ([{"tag": f"{s}_(kantai_collection)", "display": s.title(), "series": "Kantai Collection", "url": None}
          for s in SHIPS]
         + [{"tag": f"{s}_(azur_lane)", "display": s.title(), "series": "Azur Lane", "url": None} for s in SHIPS[:10]]
         + [{"tag": "hakurei_reimu", "display": "Hakurei Reimu", "series": "Touhou Project", "url": None},
            {"tag": "mal_5458", "display": "Marisa Kirisame", "series": "Touhou Project",
             "url": "https://myanimelist.net/character/5458"}])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    directory = make_tiny_bundle(tmp_path_factory.mktemp("works_bundle"), known=KNOWN)
    return Pipeline.from_bundle(directory, Settings(ort_threads=1))


async def test_characters_kancolle_lists_the_ship_girls_only(world):
    res = await world.member.slash(world.channel, "characters", search="kancolle")
    first = res.response.embeds[0]
    lines = first.description.splitlines()
    assert len(lines) == 25 and all(line.endswith("— *Kantai Collection*") for line in lines)
    assert first.footer.text.startswith("Page 1/2") and f"30 of the {len(KNOWN) + len(LABELS)} characters" in first.footer.text
    nxt = await world.member.click(res.response.message, label="Next")
    assert all(line.endswith("— *Kantai Collection*") for line in nxt.response.embeds[0].description.splitlines())

    # the other spelling of the work, and a name within it
    both = await world.member.slash(world.channel, "characters", search="kantai collection")
    assert "30 of the" in both.response.embeds[0].footer.text
    one = await world.member.slash(world.channel, "characters", search="fubuki kancolle")
    assert one.response.embeds[0].description == "Fubuki — *Kantai Collection*"

    touhou = await world.member.slash(world.channel, "characters", search="touhou")
    assert touhou.response.embeds[0].description.splitlines() == [
        "Hakurei Reimu — *Touhou Project*", "[Marisa Kirisame](https://myanimelist.net/character/5458) — *Touhou Project*"]

    choices = await world.member.autocomplete(world.channel, "characters", "search", "kancolle")
    assert len(choices) == 25 and all(c["name"].endswith("— Kantai Collection") for c in choices)
