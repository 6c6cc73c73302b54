"""training/general/coverage.py: which of the reference system's tags a bundle knows, by tag or by name within the
tag's own work (a namesake of another work does not count)."""

from __future__ import annotations

import json

from training.common import ROOT
from training.general.coverage import (
    REFERENCE_TAGS,
    Known,
    bundle_characters,
    coverage,
    missing_by_work,
    name_key,
    tag_name,
    tag_works,
)
from training.general.labels import reference_series

KNOWN = [
    Known("hakurei_reimu", "Hakurei Reimu", "Touhou Project"),  # the very tag
    Known("mal_5458", "Marisa Kirisame", "Touhou Project"),  # the same name, given name first, same franchise
    Known("fubuki_(azur_lane)", "Fubuki", "Azur Lane"),  # a namesake of another work
    Known("mal_2215", "Akiha Toono", None),  # a portrait whose work the data does not say
    Known("mal_46169", "Nozomi Toujou", "Love Live! School Idol Project"),
]
LOOKUP = {"kirisame_marisa": "touhou", "fubuki_(kantai_collection)": "kantai collection",
          "toono_akiha": "tsukihime", "tojo_nozomi": "love live!"}


def test_a_tag_is_known_by_itself_or_by_a_name_of_its_own_work():
    r = coverage(["hakurei_reimu", "kirisame_marisa", "fubuki_(kantai_collection)", "toono_akiha", "tojo_nozomi",
                  "nobody_(nowhere)"], KNOWN, LOOKUP)
    assert r["verdicts"] == {"hakurei_reimu": "tag", "kirisame_marisa": "name",
                             "fubuki_(kantai_collection)": "namesake_only", "toono_akiha": "name_unconfirmed",
                             "tojo_nozomi": "name", "nobody_(nowhere)": "unknown"}
    assert (r["by_tag"], r["by_name"], r["by_name_unconfirmed"], r["namesake_only"], r["unknown"]) == (1, 2, 1, 1, 1)
    assert r["known_share"] == round(4 / 6, 4) and r["confirmed_share"] == round(3 / 6, 4)


def test_the_works_come_from_the_look_up_or_the_tags_suffix():
    # no look-up entry: the suffix names the work, and Azur Lane's Fubuki is still another work's
    assert coverage(["fubuki_(kantai_collection)"], KNOWN, {})["verdicts"]["fubuki_(kantai_collection)"] == "namesake_only"
    kc = KNOWN + [Known("fubuki_(kantai_collection)_2", "Fubuki", "Kantai Collection")]
    assert coverage(["fubuki_(kantai_collection)"], kc, {})["verdicts"]["fubuki_(kantai_collection)"] == "name"
    assert tag_works("kirisame_marisa", LOOKUP) == ["touhou"] and tag_works("kirisame_marisa", {}) == []
    assert tag_works("aqua_(konosuba)", {"aqua_(konosuba)": "kono subarashii"}) == ["kono subarashii", "konosuba"]
    # a tag with no work at all: a namesake cannot be told from the character, so it counts, unconfirmed
    assert coverage(["akiha_toono"], [Known("x_(y)", "Akiha Toono", "Tsukihime")], {})["verdicts"] == {
        "akiha_toono": "name_unconfirmed"}


def test_names_are_compared_by_their_folded_words():
    assert name_key("Marisa Kirisame") == name_key("kirisame_marisa") == ("kirisame", "marisa")
    assert name_key("Nozomi Toujou") == name_key("tojo_nozomi") and name_key("Yuuki") == name_key("yuki")
    assert name_key("Saten Ruiko") != name_key("Ruiko")
    assert tag_name("fubuki_(kantai_collection)") == "fubuki" and tag_name("kirisame_marisa") == "kirisame_marisa"
    # a game tag's own words count as its name too, a MyAnimeList tag's never
    assert coverage(["akagi"], [Known("akagi_(azur_lane)", "赤城", "Azur Lane")], {"akagi": "azur lane"}
                    )["verdicts"]["akagi"] == "name"
    assert coverage(["mal"], [Known("mal_1", "Someone", None)], {})["verdicts"]["mal"] == "unknown"


def test_missing_tags_are_counted_by_the_franchises_one_spelling():
    verdicts = {"a_(kantai_collection)": "unknown", "b": "namesake_only", "c": "unknown", "d": "tag"}
    got = missing_by_work(verdicts, {"b": "kancolle", "c": "touhou"})
    assert got == {"Kantai Collection": 2, "Touhou Project": 1}



def test_chinese_only_works_cannot_be_compared_and_character_means_the_works_name():
    assert tag_works("erza_scarlet", {"erza_scarlet": "妖精的尾巴"}) == []
    assert tag_works("chrome_dokuro", {"chrome_dokuro": "家庭教师Hitman Reborn!"}) == ["家庭教师Hitman Reborn!"]
    assert tag_works("bayonetta_(character)", {}) == ["bayonetta"]
    known = [Known("mal_5189", "Erza Scarlet", "Fairy Tail"), Known("mal_92041", "Bayonetta", "Bayonetta"),
             Known("mal_500", "Sakura Matou", "Fate/stay night")]
    v = coverage(["erza_scarlet", "bayonetta_(character)", "matou_sakura"], known,
                 {"erza_scarlet": "妖精的尾巴", "matou_sakura": "fate (series)"})["verdicts"]
    # Danbooru's " (series)" is no part of the work's name: Fate/stay night is a Fate
    assert v == {"erza_scarlet": "name_unconfirmed", "bayonetta_(character)": "name", "matou_sakura": "name"}


def test_the_default_bundle_knows_most_of_the_reference_list(shared):
    """The issue's target: >= .55 of the 1,551 reference tags known by tag or by name within their own work (.3765
    by this measure before KanColle, Touhou and the Idolmaster were added; the issue's cruder one said .36)."""
    reference = json.loads(REFERENCE_TAGS.read_text())
    r = coverage(reference, bundle_characters(ROOT / "models"), reference_series()[0])
    assert len(reference) == 1551 and r["known_share"] >= 0.55 and r["confirmed_share"] >= 0.41
    v = r["verdicts"]
    # the three franchises the issue names: KanColle by tag, Touhou and the Idolmaster by tag or by name
    assert v["fubuki_(kantai_collection)"] == "tag" and v["amami_haruka"] == "tag" and v["cirno"] == "tag"
    assert v["hakurei_reimu"] == "name"  # Reimu's MyAnimeList portrait, of Touhou Project
    kc = [t for t in reference if t.endswith("_(kantai_collection)")]
    assert sum(v[t] == "tag" for t in kc) / len(kc) >= 0.9
