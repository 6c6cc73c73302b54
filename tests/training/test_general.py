"""The general encoder's stages (training/general): label merges, splits, composing graphs with declared blocks,
the calibration's scoring (the same numbers as inference/classify.py), the decision fit, the scenes' tag match."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bundles import encoder as tiny_encoder
from inference.characters import CharacterIndex, KnownGallery
from inference.classify import Classifier
from inference.manifest import ClassifierSpec
from inference.result import Character
from training.general import bundle, compose, labels, split


def test_same_person_merged_only_when_the_works_agree():
    assert labels.same_work("Re:Zero kara Hajimeru Isekai Seikatsu", "re:zero kara hajimeru isekai seikatsu")
    assert labels.same_work("Toradora!", "toradora")
    assert not labels.same_work("Epic Seven", "Princess Connect! Re:Dive")
    assert not labels.same_work(None, "Arknights") and not labels.same_work("", "")
    # one franchise however the sources spell it
    assert labels.same_work("touhou", "Touhou Koumakyou ~ the Embodiment of Scarlet Devil")
    assert labels.same_work("idolmaster", "The Idolmaster") and labels.same_work("kancolle", "Kantai Collection")
    assert not labels.same_work("Kantai Collection", "Azur Lane")


def test_a_franchise_has_one_spelling():
    assert labels.franchise("touhou") == labels.franchise("Touhou Project") == "Touhou Project"
    assert labels.franchise("Touhou Koumakyou ~ the Embodiment of Scarlet Devil") == "Touhou Project"
    assert labels.franchise("idolmaster") == labels.franchise("The Idolmaster") == "The Idolmaster"
    assert labels.franchise("kantai collection") == "Kantai Collection"
    # a sub-series keeps its name, and other works have no franchise spelling
    assert labels.franchise("The Idolmaster Cinderella Girls") is None and labels.franchise("Azur Lane") is None
    assert labels.work_key("idolmaster") == labels.work_key("The Idolmaster") != labels.work_key("Azur Lane")
    labs = [labels.Label("a", "A", "touhou", None, []), labels.Label("b", "B", "Touhou Project", None, []),
            labels.Label("c", "C", "Idolmaster", None, []), labels.Label("d", "D", "blue archive", None, [])]
    labels.name_works(labs)
    assert [lab.series for lab in labs] == ["Touhou Project", "Touhou Project", "The Idolmaster", "Blue Archive"]


def test_the_popular_franchises_are_in_the_label_list_once(shared):
    """KanColle, Touhou and the Idolmaster (the issue's new sources): one work each, the MyAnimeList twin merged
    into the game tag when the works agree (the hint is on the game's row only), namesakes of other works apart."""
    labs, rows, notes = labels.build()
    by_tag = {lab.tag: lab for lab in labs}
    works = {}
    for lab in labs:
        works.setdefault(lab.series, []).append(lab.tag)
    assert len(works["Kantai Collection"]) == 322
    assert len(works["Touhou Project"]) >= 76 and len(works["The Idolmaster"]) >= 75
    assert not {"Touhou", "Idolmaster", "touhou", "idolmaster"} & set(works)
    # kirisame_marisa's row names mal_5458 as same_as; the portrait's row names nothing: merged all the same
    assert by_tag["kirisame_marisa"].url == "https://myanimelist.net/character/5458" and "mal_5458" not in by_tag
    assert by_tag["izayoi_sakuya"].url.endswith("/5570")  # MyAnimeList's work: a Touhou game's own title
    assert by_tag["amami_haruka"].series == "The Idolmaster" and "mal_2759" not in by_tag
    # Prinz Eugen's portrait has no work: it stays apart from KanColle's and Azur Lane's, which stay apart too
    assert {"mal_174202", "prinz_eugen_(kantai_collection)", "prinz_eugen_(azur_lane)"} <= set(by_tag)
    assert by_tag["fubuki_(kantai_collection)"].series == "Kantai Collection"
    # two game tags of one person in one work are one label (Uma Musume writes Hayakawa Tazuna both ways)
    assert "hayakawa_tazuna_(umamusume)" in by_tag and "tazuna_hayakawa_(umamusume)" not in by_tag
    assert {r.tag for r in rows if r.source_tag == "tazuna_hayakawa_(umamusume)"} == {"hayakawa_tazuna_(umamusume)"}
    # remodels are one character: Verniy is Hibiki
    hibiki = {r.variant for r in rows if r.tag == "hibiki_(kantai_collection)"}
    assert {"Hibiki", "Verniy"} <= hibiki
    assert any(n.startswith("mal_5458 ") for n in notes) and any(n.startswith("tazuna_hayakawa") for n in notes)


def test_the_real_label_list(shared):
    labs, rows, notes = labels.build()
    by_tag = {lab.tag: lab for lab in labs}
    assert len(labs) >= 7900 and len(rows) == 12965
    # Maki's portrait is merged into the faces/ tag (same work); the two Rems of Epic Seven and Princess Connect
    # stay apart from each other (other works), and so do the two MyAnimeList Rems
    assert by_tag["nishikino_maki"].url.endswith("/46165") and "mal_46165" not in by_tag
    assert {"rem_(epic_seven)", "rem_(princess_connect)", "mal_118763", "mal_1905"} <= set(by_tag)
    assert by_tag["amiya_(arknights)"].series == "Arknights"
    assert all(r.tag in by_tag for r in rows)
    assert any("mal_46165" in n for n in notes)
    # the reference look-up is by name: its "Rem" is Re:Zero's, not Death Note's (mal_1905). For a name two
    # MyAnimeList characters share, only the portrait checked by eye (series_checked.json) gets that work
    assert by_tag["mal_118763"].series.startswith("Re:Zero") and by_tag["mal_1905"].series is None
    assert by_tag["mal_497"].series == "Fate/stay night" and by_tag["mal_51523"].series is None  # Artoria, not Nero
    import json
    from collections import Counter

    checked = json.loads(labels.SERIES_CHECKED.read_text())
    shared_names = Counter(lab.display for lab in labs if lab.tag.startswith("mal_"))
    assert all(by_tag[t].display == c["name"] and shared_names[c["name"]] > 1 and by_tag[t].series == c["series"]
               for t, c in checked.items())
    assert len({c["name"] for c in checked.values()}) == len(checked)  # at most one portrait per shared name
    # merges checked by eye: Darker than Black's Amber is not Genshin's, though series.csv gives her Genshin Impact
    assert by_tag["mal_3571"].series is None and by_tag["amber_(genshin_impact)"].url is None
    assert not any(n.startswith(t + " ") for n in notes for t in json.loads(labels.MERGE_CHECKED.read_text()))
    assert by_tag["mal_1905"].url == "https://myanimelist.net/character/1905"
    assert by_tag["mal_13701"].series  # Mikoto Misaka: a name no other portrait has keeps its work
    # series.csv's joins by name to a Danbooru tag, looked at by eye: a wrong one gives no work (Inuyasha's Kikyou
    # is not Blue Archive's, One Punch Man's Boros not Hololive's) and undoes the merge it made (MyAnimeList's
    # Courier is not Arknights')
    joins = json.loads(labels.JOINS_CHECKED.read_text())
    assert len(joins) >= 47 and {v["verdict"] for v in joins.values()} <= {"wrong", "unsure"}
    assert all(by_tag[t].series is None and by_tag[t].display == v["name"] for t, v in joins.items())
    assert by_tag["mal_1359"].series is None and by_tag["mal_108235"].series is None
    assert by_tag["courier_(arknights)"].url is None and by_tag["mal_179400"].sources == ["myanimelist"]
    assert by_tag["mal_1073"].series == "Rozen Maiden"  # a right join keeps its work, title-cased
    # one spelling per work: "blue archive" and "Blue Archive" are one work, shown the way its source writes it
    works = {lab.series for lab in labs if lab.series}
    assert len({labels.work_key(w) for w in works}) == len(works)
    assert not [w for w in works if w == w.lower() and any(c.isalpha() for c in w)]
    assert by_tag["mal_184040"].series == "Hololive" and by_tag["mal_16023"].series == "Fate"


def test_danbooru_copyright_tags_are_title_cased():
    cases = {
        "toaru majutsu no index": "Toaru Majutsu no Index",
        "re:zero kara hajimeru isekai seikatsu": "Re:Zero kara Hajimeru Isekai Seikatsu",
        "fate/grand order": "Fate/Grand Order",
        "naruto (series)": "Naruto",
        "yu-gi-oh!": "Yu-Gi-Oh!",
        "osomatsu-san": "Osomatsu-san",
        "gochuumon wa usagi desu ka?": "Gochuumon wa Usagi Desu ka?",
        "the ancient magus' bride": "The Ancient Magus' Bride",
        "steins;gate": "Steins;Gate",
        "Lucky☆Star": "Lucky☆Star",  # written with capitals: kept as is
    }
    assert {t: labels._title(t) for t in cases} == cases
    assert labels.work_key("naruto (series)") == labels.work_key("Naruto")
    labs = [labels.Label("a", "A", "blue archive", None, []), labels.Label("b", "B", "Blue Archive", None, []),
            labels.Label("c", "C", "kemono friends", None, []), labels.Label("d", "D", None, None, [])]
    labels.name_works(labs)
    assert [lab.series for lab in labs] == ["Blue Archive", "Blue Archive", "Kemono Friends", None]


def test_refresh_undoes_a_wrong_merge_as_a_rebuild_would(shared, tmp_path):
    # the shipped bundle, with Darker than Black's Amber merged back into Genshin's (as before merge_checked.json):
    # refresh must split them again, recompute both prototypes, and match the shipped files byte for byte
    import json
    import shutil

    from inference.bundle import sha256_file
    from training.general import refresh

    models = bundle.ROOT / "models"
    for f in models.iterdir():
        if f.is_file():
            shutil.copy2(f, tmp_path / f.name)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["labels"] = "chara.json"
    shutil.copy2(bundle.ROOT / "chara.json", tmp_path / "chara.json")
    with np.load(models / "known.npz") as z:
        names, vectors = list(z["names"]), z["vectors"]
    i = names.index("mal_3571")
    stale_names, stale = names[:i] + names[i + 1:], np.delete(vectors, i, axis=0)
    np.savez_compressed(tmp_path / "known.npz", names=np.array(stale_names), vectors=stale)
    chars = [r for r in json.loads((models / "characters.json").read_text()) if r["tag"] != "mal_3571"]
    (tmp_path / "characters.json").write_text(json.dumps(chars, ensure_ascii=False, indent=0))
    for section in ("known", "characters"):
        manifest[section]["sha256"] = sha256_file(tmp_path / manifest[section]["file"])
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    report = refresh.refresh(tmp_path, check=5)
    assert "mal_3571" in report["recomputed"] and report["check_min_cosine"] >= 0.999 and report["removed"] == []
    with np.load(tmp_path / "known.npz") as z:
        assert list(z["names"]) == names
        assert np.abs(z["vectors"].astype(np.float32) - vectors.astype(np.float32)).max() < 1e-3
    assert json.loads((tmp_path / "characters.json").read_text()) == json.loads((models / "characters.json").read_text())
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["known"]["characters"] == len(names) and m["known"]["sha256"] == sha256_file(tmp_path / "known.npz")

def test_refresh_recomputes_the_characters_a_merge_was_made_into():
    from training.general.refresh import merged_into

    def row(tag, source_tag):
        return labels.CharRow(f"x/{source_tag}.jpg", tag, source_tag, "x", "icon", "v")

    rows = [row("hakurei_reimu", "hakurei_reimu"), row("kirisame_marisa", "kirisame_marisa"),
            row("kirisame_marisa", "mal_5458"), row("izayoi_sakuya", "mal_5570"), row("izayoi_sakuya", "izayoi_sakuya")]
    names = ["hakurei_reimu", "izayoi_sakuya", "kirisame_marisa"]
    # the old bundle knew Marisa's portrait apart (mal_5458): hers changed. Sakuya's portrait was not known
    # apart, so hers is new or unchanged, not merged into; Reimu's pictures are her own
    assert merged_into(rows, names, {"hakurei_reimu", "kirisame_marisa", "mal_5458", "izayoi_sakuya"}) == {
        "kirisame_marisa"}
    assert merged_into(rows, names, set()) == set()


def test_refresh_all_rewrites_what_moved_and_refuses_another_encoder():
    from training.general.refresh import split_moved

    probe = ["a", "b", "c", "d"]
    moved, same = split_moved(probe, np.array([1.0, 0.9995, 0.6, 0.99999]), every=True)
    assert moved == ["c"] and len(same) == 3  # c's pictures changed; the others reproduce the bundle's
    with pytest.raises(SystemExit, match="rebuild"):  # most moved: not pictures added, another encoder
        split_moved(probe, np.array([0.7, 0.8, 0.6, 1.0]), every=True)
    with pytest.raises(SystemExit, match="rebuild"):  # a plain check: none may move
        split_moved(probe, np.array([1.0, 1.0, 0.6, 1.0]), every=False)
    assert split_moved(probe, np.ones(4), every=False)[0] == []


def test_splits_are_deterministic_and_keep_the_faces_characters():
    class Row:
        def __init__(self, tag, variant):
            self.tag, self.variant = tag, variant

    rows = [Row(f"c{i}", v) for i in range(400) for v in ("a", "b")] + [Row("nishikino_maki", "p")]
    a = split.assign_splits(rows, keep=frozenset({"nishikino_maki"}))
    assert a == split.assign_splits(rows, keep=frozenset({"nishikino_maki"}))
    assert a[-1] == "train"
    assert {"train", "val_variant", "heldout_char"} == set(a)
    by_tag: dict[str, set] = {}
    for r, s in zip(rows, a, strict=True):
        by_tag.setdefault(r.tag, set()).add(s)
    # a held-out outfit always leaves the character's other outfit in training; a held-out character is held whole
    assert all(s in ({"train"}, {"train", "val_variant"}, {"heldout_char"}) for s in by_tag.values())


def test_compose_puts_the_general_block_first_and_leaves_both_unchanged(tmp_path):
    closed = tiny_encoder(tmp_path / "closed.onnx", dim=12, size=32, seed=1)
    general = tiny_encoder(tmp_path / "general.onnx", dim=4, size=32, seed=2)
    blocks = compose.compose_files(closed, general, tmp_path / "both.onnx", 12, 4)
    assert blocks == [{"name": "general", "dims": 4}, {"name": "closed", "dims": 12}]
    onnx.checker.check_model(onnx.load(str(tmp_path / "both.onnx")))
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)

    def run(p):
        return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input0": x})[0]

    both = run(tmp_path / "both.onnx")
    np.testing.assert_allclose(both[:, :4], run(general), atol=1e-6)
    np.testing.assert_allclose(both[:, 4:], run(closed), atol=1e-6)
    with pytest.raises(ValueError, match="different inputs"):
        compose.compose(onnx.load(str(closed)), onnx.load(str(tiny_encoder(tmp_path / "g.onnx", 4, size=16))), 12, 4)


@pytest.mark.parametrize("mode", ["joint", "gate"])
def test_calibration_scores_are_what_serving_computes(mode):
    """bundle.scores (vectorised, for the calibration grid) gives the per-name probabilities inference/classify.py
    serves, in both modes."""
    rng = np.random.default_rng(0)
    labels32 = ["a", "b", "c"]
    known = ["a", "b", "c", "x", "y", "z", "w"]
    W = rng.standard_normal((3, 6)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    protos = rng.standard_normal((len(known), 4)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    emb = rng.standard_normal((5, 10)).astype(np.float32)
    emb[:, :4] /= np.linalg.norm(emb[:, :4], axis=1, keepdims=True)
    emb[:, 4:] /= np.linalg.norm(emb[:, 4:], axis=1, keepdims=True)
    Wp = np.concatenate([np.zeros((3, 4), np.float32), W], axis=1)
    clf = Classifier(ClassifierSpec.parse({"format": "linear_npz", "gallery_dims": 4}), labels32, weights=(Wp, b),
                     known=KnownGallery(known, protos, 20.0, -3.0, mode))
    p, names, _ = clf.probabilities(emb)
    served = np.zeros((len(emb), len(known)))
    for j, n in enumerate(names):
        served[:, known.index(n)] += p[:, j]
    lin = emb[:, 4:] @ W.T + b
    got = bundle.scores(lin, emb[:, :4] @ protos.T, np.array([0, 1, 2]), 20.0, -3.0, mode)
    np.testing.assert_allclose(got, served, atol=1e-6)


def test_decision_fit_names_at_most_five_percent_of_the_unknown():
    rng = np.random.default_rng(0)
    n = 400
    known = np.concatenate([rng.normal([0.9, 0.8, 0.2], 0.1, (n, 3)), rng.normal([0.5, 0.4, 0.05], 0.1, (n, 3))])
    unknown = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    correct = ~unknown
    from inference.decide import FEATURES

    fitted = bundle.fit_decision(known, correct.astype(float), unknown, names=FEATURES)
    assert fitted["features"] == list(FEATURES) and len(fitted["weights"]) == 3
    from inference.decide import Decision, known_scores

    s = known_scores(Decision.from_manifest(fitted), known)
    nums = bundle.decision_numbers(s, correct, unknown, fitted["threshold"])
    assert nums["unknown_named"] <= 0.05 and nums["known_named_right"] > 0.9 and nums["auroc_known_vs_unknown"] > 0.98
    assert bundle.auroc(np.array([1.0, 2.0]), np.array([0.0, 0.5])) == 1.0
    assert bundle.auroc(np.array([1.0]), np.array([1.0])) == 0.5


def test_scene_tags_match_by_the_words_of_the_name():
    from training.general.scenes import match_tags

    entries = {t: Character(t, d) for t, d in [("mal_40", "Luffy Monkey D."), ("mal_62", "Zoro Roronoa"),
                                                ("mal_1", "Rem"), ("mal_2", "Rem"), ("yagami_kou", "Yagami Kou")]}
    index = CharacterIndex(entries, list(entries))
    got = match_tags(index, {"monkey_d._luffy", "roronoa_zoro", "rem_(re:zero)", "yagami_kou", "nobody"})
    assert got == {"monkey_d._luffy": "mal_40", "roronoa_zoro": "mal_62", "yagami_kou": "yagami_kou"}  # two Rems


def test_the_closed_blocks_parts_are_declared_from_its_steps():
    info = {"dim": 2904, "colour": {"bins": [24, 3, 3]}, "pooled": {"dims": 1024}, "hires": {"dims": 1152}}
    assert bundle.closed_parts(info) == [{"name": "embedding", "dims": 512}, {"name": "colour", "dims": 216},
                                         {"name": "pooled", "dims": 1024}, {"name": "hires", "dims": 1152}]
    assert bundle.closed_parts({"dim": 512}) == [{"name": "embedding", "dims": 512}]  # no appending step


def test_a_warm_start_with_other_identities_starts_each_proxy_at_its_mean():
    import torch  # the train extra (`make test` installs it)

    from training.encoder.model import Encoder
    from training.encoder.train import embed, identity_means

    torch.manual_seed(0)
    model = Encoder(widths=(8, 8, 8, 8), depths=(1, 1, 1, 1), dim=16)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 96, 96, 3), dtype=np.uint8)
    ident = np.array([5, 2, 5, 9, 2, 2, 9])
    tr = np.array([0, 1, 2, 3, 4, 5])  # picture 3 is of identity 9, not one of `ids`: left out
    ids = [2, 5]
    means = identity_means(model, imgs, ident, tr, ids, 32)
    e = embed(model, imgs, 32, flip=False)
    want = np.stack([e[[1, 4, 5]].mean(0), e[[0, 2]].mean(0)])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert means.shape == (2, 16) and means.dtype == np.float32
    np.testing.assert_allclose(means, want, atol=1e-5)


def test_a_warm_start_keeps_the_proxies_only_for_the_same_identities():
    import torch

    from training.encoder.model import Encoder, Projector
    from training.encoder.train import CosFace
    from training.general.train import warm_start

    torch.manual_seed(0)
    old = Encoder(widths=(8, 8, 8, 8), depths=(1, 1, 1, 1), dim=16), Projector(16), CosFace(16, 3)
    ck = {"state_dict": old[0].state_dict(), "proj": old[1].state_dict(), "cosface": old[2].state_dict(),
          "identities": ["a", "b", "c"]}
    means = np.full((3, 16), 0.25, np.float32)

    def fresh():
        torch.manual_seed(1)
        return Encoder(widths=(8, 8, 8, 8), depths=(1, 1, 1, 1), dim=16), Projector(16), CosFace(16, 3)

    new = fresh()
    warm_start(ck, *new, ["a", "b", "c"], lambda: means)
    assert torch.equal(new[2].w, old[2].w)
    for k, v in old[0].state_dict().items():
        assert torch.equal(new[0].state_dict()[k], v), k
    new = fresh()  # as many identities, in another order: the rows would name the wrong ones
    warm_start(ck, *new, ["a", "c", "b"], lambda: means)
    assert np.array_equal(new[2].w.detach().numpy(), means)
    new = fresh()  # a checkpoint from before the identities were saved: the count decides
    warm_start({k: v for k, v in ck.items() if k != "identities"}, *new, ["a", "c", "b"], lambda: means)
    assert torch.equal(new[2].w, old[2].w)


def test_a_step_draws_its_same_work_share_from_one_work_and_no_identity_twice():
    """`same_work`: round(share x P) of a step's identities come from one work (all of it when it is smaller), the
    rest from everyone by weight; works are the labels' series with enough identities, and no label without a
    series is in one."""
    from training.general.train import draw, works

    series = ["A"] * 10 + ["B"] * 3 + [None] * 20 + ["C"] * 40
    labs = [labels.Label(f"t{i}", f"t{i}", s, None, ["x"]) for i, s in enumerate(series)]
    ids = list(range(len(labs)))
    groups = works(labs, ids, min_identities=8)
    assert set(groups) == {"A", "C"} and len(groups["C"]) == 40
    id_p = np.full(len(ids), 1.0 / len(ids))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        got = draw(rng, ids, id_p, 20, groups, 0.5)
        assert len(got) == 20 and len(set(got.tolist())) == 20
        first = got[:10]
        work = {series[c] for c in first}
        assert len(work) == 1 and work <= {"A", "C"}
        seen |= work
    assert seen == {"A", "C"}
    assert len(draw(rng, ids, id_p, 20, {}, 0.5)) == 20  # no works: every identity drawn alone
    small = draw(rng, ids, id_p, 30, {"B": np.array([10, 11, 12])}, 0.5)
    assert sorted(small[:3].tolist()) == [10, 11, 12] and len(set(small.tolist())) == 30


def test_a_cross_source_identity_pairs_two_sources_and_the_others_two_pictures():
    """`cross_pairs`: an identity with pictures from two or more sources gets one view from each of two different
    sources; any other identity two different pictures where it has two, else one twice."""
    from training.general.train import pair

    rng = np.random.default_rng(0)
    pool = np.array([10, 11, 12, 13, 14])
    sources = np.array(["genshin", "fanart", "fanart", "fanart", "fanart"])
    for _ in range(40):
        a, b = pair(rng, pool, sources)
        assert {sources[pool == a][0], sources[pool == b][0]} == {"genshin", "fanart"}
    assert len(set(pair(rng, pool, None).tolist())) == 2
    assert pair(rng, np.array([7]), None).tolist() == [7, 7]


def test_the_measured_classifier_covers_only_the_classes_it_is_given():
    """The bundle's classifier is fitted twice: measured without the fan-art proxy's characters, shipped with all;
    `fit_on` fits one row per class given, in order, on the pictures of `mask` only."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:4] * 3
    identity = np.repeat(np.arange(4), 30)
    e = centres[identity] + rng.normal(0, 0.3, (len(identity), 8)).astype(np.float32)
    data = SimpleNamespace(identity=identity)
    mask = np.ones(len(identity), bool)
    mask[identity == 2] = False  # class 2's pictures are not in the fit
    W, b = bundle.fit_on(e, data, mask, [3, 1, 0])
    assert W.shape == (3, 8) and b.shape == (3,)
    pred = np.argmax(e @ W.T + b, 1)
    for row, c in enumerate([3, 1, 0]):
        assert (pred[identity == c] == row).mean() > 0.95


def test_measure_sets_ranks_each_set_with_and_without_the_classifier():
    """`measure_sets`: each set's top-1/top-3 by the calibrated ranking (classifier and gallery, `scores`) and by the
    gallery alone; a head the gallery ranks second is named right when the classifier is sure of it."""
    heads = bundle.Heads(lin=np.array([[6.0, -6.0], [-6.0, 6.0], [0.0, 0.0], [-6.0, 6.0]]),
                         cos=np.array([[0.9, 0.1, 0.2], [0.1, 0.9, 0.2], [0.1, 0.2, 0.9], [0.1, 0.45, 0.5]]),
                         y=np.array([0, 1, 2, 1]), lin_cols=np.array([0, 1]))
    sets = {"seen": np.array([True, True, False, False]), "new": np.array([False, False, True, True])}
    got = bundle.measure_sets(heads, sets, {"mode": "joint", "scale": 10.0, "bias": 0.0})
    assert list(got) == ["seen", "seen_gallery_only", "new", "new_gallery_only"]
    assert got["seen"] == got["seen_gallery_only"] == {"top1": 1.0, "top3": 1.0, "n": 2}
    assert got["new_gallery_only"] == {"top1": 0.5, "top3": 1.0, "n": 2}  # the last head: its character second
    assert got["new"] == {"top1": 1.0, "top3": 1.0, "n": 2}


def test_per_source_measures_each_source_apart():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    got = bundle.per_source(p, np.array([0, 1, 1, 1]), np.array(["pixiv", "game", "pixiv", "game"]))
    assert list(got) == ["game", "pixiv"]  # sorted
    assert got["game"] == {"top1": 1.0, "top3": 1.0, "n": 2}
    assert got["pixiv"] == {"top1": 0.5, "top3": 1.0, "n": 2}


def test_the_decision_is_cross_fitted_half_by_half():
    """`fit_and_crossfit_decision`: the shipped decision is fitted on both halves; each half is scored by the fit
    of the other alone, and the cross-fitted totals are those two halves' numbers taken together."""
    from inference.decide import Decision, known_scores

    rng = np.random.default_rng(0)

    def half(n_known, n_unknown):
        unknown = np.r_[np.zeros(n_known, bool), np.ones(n_unknown, bool)]
        f = rng.normal(0.0, 0.3, (len(unknown), len(bundle.DECISION_FEATURES)))
        f[:, :3] += np.where(unknown, 0.0, 1.0)[:, None]  # the known heads stand out on the first three features
        correct = ~unknown & (rng.random(len(unknown)) < 0.9)
        return f, correct, unknown

    dec_in = {"calib": half(300, 200), "report": half(260, 240)}
    decision, numbers, (known_s, unknown_s, threshold) = bundle.fit_and_crossfit_decision(dec_in)
    assert list(numbers) == ["fitted", "max_unknown_named", "in_sample", "calib", "calib_first_three_features",
                             "calib_top1_probability_only", "report", "report_first_three_features",
                             "report_top1_probability_only", "cross_fitted"]
    assert numbers["fitted"] == decision and decision["features"] == list(bundle.DECISION_FEATURES)
    # where it is fitted, at most the share it is set to (give or take one head: the threshold is rounded to 4 places)
    assert numbers["in_sample"]["unknown_named"] <= bundle.MAX_UNKNOWN_NAMED + 1 / 440
    assert numbers["in_sample"]["auroc_known_vs_unknown"] > 0.95 and numbers["report"]["known_heads"] == 260
    # the report half's scores come from the calib half's fit alone
    f, correct, unknown = dec_in["report"]
    f_c, c_c, u_c = dec_in["calib"]
    other = Decision.from_manifest(bundle.fit_decision(f_c, c_c.astype(float), u_c, bundle.MAX_UNKNOWN_NAMED))
    np.testing.assert_allclose(known_s, known_scores(other, f[~unknown]))
    np.testing.assert_allclose(unknown_s, known_scores(other, f[unknown]))
    assert threshold == other.threshold
    cross = numbers["cross_fitted"]
    assert cross["unknown_heads"] == 440 and cross["known_heads"] == 560
    named = numbers["calib"]["unknown_named"] * 200 + numbers["report"]["unknown_named"] * 240
    assert abs(cross["unknown_named"] * 440 - named) < 0.1  # up to the rounding of each half's share


def test_a_run_and_flags_build_the_config_a_committed_one_would():
    """`python -m training.general.bundle RUN --out DIR --version V` (the earlier bundles' command) builds the
    `Config` the committed config holds; with a config, `--out` alone may move the bundle."""
    import argparse
    from dataclasses import replace
    from pathlib import Path

    ap = argparse.ArgumentParser()

    def args(target, **flags):
        given = {"out": None, "base": None, "version": None, "compares": None, "hub_k": None, "hub_weight": None}
        return argparse.Namespace(target=target, **{**given, **flags})

    path = str(bundle.CONFIGS / "mnv2t.toml")
    committed = bundle.Config.load(path)
    flags = bundle.config_of(args("mnv2t", out=bundle.ROOT / committed.out, version="2026.12.08.1"), ap)
    assert flags.out_dir == committed.out_dir and replace(flags, out=committed.out) == committed
    moved = bundle.config_of(args(path, out=Path("elsewhere")), ap)
    assert moved.out_dir == Path.cwd() / "elsewhere" and replace(moved, out=committed.out) == committed
    with pytest.raises(SystemExit):  # what the config sets is set there
        bundle.config_of(args(path, version="2026.12.09.1"), ap)
    composed = bundle.config_of(args("g64m", compares="general,closed.colour", hub_weight=0.5), ap)
    assert composed.compares == ("general", "closed.colour") and composed.hub_weight == 0.5
    assert composed.out_dir == bundle.dataset.OUT / "bundle" and composed.base_dir == bundle.ROOT / "models"


def test_a_composed_bundle_puts_the_general_block_first_and_the_classifier_reads_the_closed_one(tmp_path):
    """The composed path's first stage (`composed_encoder`, `closed_classifier`) on tiny graphs: the graph is
    [general | closed] with the closed block's parts declared, galleries compare `COMPARES`, and the base
    classifier, padded with zeros, gives the closed block's logits."""
    import json

    base_dir, run_dir = tmp_path / "base", tmp_path / "run"
    base_dir.mkdir(), run_dir.mkdir()
    tiny_encoder(base_dir / "encoder.onnx", dim=12, size=32, seed=1)
    tiny_encoder(run_dir / "general.onnx", dim=4, size=32, seed=2)
    (base_dir / "detector.onnx").write_bytes(b"detector")
    (base_dir / "encoder_export.json").write_text(json.dumps({"dim": 12, "colour": {"bins": [2, 2, 2]}}))
    (run_dir / "general_export.json").write_text(json.dumps({"run": "tiny", "steps": 1, "size": 32, "dim": 4,
                                                             "bytes": 1}))
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((3, 12)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    np.savez(base_dir / "classifier.npz", W=W, b=b)
    shipped = bundle.Config(run="tiny").base_dir / "manifest.json"
    encoder_section = {k: v for k, v in json.loads(shipped.read_text())["encoder"].items()
                       if k not in ("blocks", "sha256")}
    base = {"encoder": {**encoder_section, "dim": 12, "input": {**encoder_section["input"], "size": [32, 32]}},
            "classifier": {"file": "classifier.npz", "format": "linear_npz", "temperature": 1.0, "gallery_dims": 4}}
    cfg = bundle.Config(run="tiny", out=str(tmp_path / "out"), base=str(base_dir))

    bundle.fresh_bundle(cfg.base_dir, cfg.out_dir)
    encoder = bundle.composed_encoder(cfg, base, run_dir, cfg.out_dir)
    assert encoder.spec["dim"] == 16 and [b["name"] for b in encoder.spec["blocks"]] == ["general", "closed"]
    assert encoder.spec["blocks"][1]["parts"] == [{"name": "embedding", "dims": 4}, {"name": "colour", "dims": 8}]
    assert encoder.compares == bundle.gallery_compares(bundle.COMPARES)
    assert encoder.made_by == {"run": "tiny", "steps": 1, "size": 32, "dim": 4, "bytes": 1}
    assert json.loads((cfg.out_dir / "encoder_export.json").read_text())["dim"] == 16
    assert (cfg.out_dir / "detector.onnx").read_bytes() == b"detector"

    clf = bundle.closed_classifier(base, cfg.base_dir, encoder, ["a", "b", "c"])
    assert all(s is m for s, m in zip(clf.shipped, clf.measured)) and "gallery_dims" not in clf.section and clf.labels == ["a", "b", "c"]
    e = bundle.embed_crops(encoder.embedder, rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8))
    np.testing.assert_allclose(clf.logits(e), e[:, 4:] @ W.T + b, rtol=1e-5, atol=1e-5)
    assert encoder.view.apply(e).shape[0] == 5


def test_the_colour_weight_is_chosen_on_the_calib_halves(monkeypatch):
    """`choose_compares` keeps the embedding alone when colour tells no one apart, and weighs colour in when it
    is what tells the characters apart; only the 'calib' sets are scored."""
    from types import SimpleNamespace

    from inference.manifest import Block

    rng = np.random.default_rng(0)
    n_id, per = 40, 4
    identity = np.repeat(np.arange(n_id), per)
    n = len(identity)
    train = np.tile([True, True, False, False], n_id)
    faces_calib = np.tile([False, False, True, False], n_id)
    outfit_calib = np.tile([False, False, False, True], n_id)
    blocks = (Block("embedding", 8), Block("colour", 6))

    def data_with(e_signal: float, c_signal: float):
        ce, cc = rng.normal(size=(n_id, 8)), rng.normal(size=(n_id, 6))
        e = np.concatenate([e_signal * ce[identity] + rng.normal(size=(n, 8)),
                            c_signal * cc[identity] + rng.normal(size=(n, 6))], axis=1).astype(np.float32)
        labs = [labels.Label(f"t{i}", f"t{i}", None, None, ["x"]) for i in range(n_id)]
        data = SimpleNamespace(identity=identity, train=train, labels=labs, val_variant=outfit_calib,
                               origin=np.where(faces_calib, "faces", "chars"), proxy_query=np.zeros(n, bool))
        return e, data

    monkeypatch.setattr(bundle, "face_splits", lambda d: np.where(faces_calib, "calib", ""))
    monkeypatch.setattr(bundle, "calib_half", lambda d: np.ones(n, bool))
    e, data = data_with(3.0, 0.0)
    assert bundle.choose_compares(e, data, blocks) == [{"part": "embedding", "weight": 1.0}]
    e, data = data_with(0.6, 3.0)
    got = bundle.choose_compares(e, data, blocks)
    assert [c["part"] for c in got] == ["embedding", "colour"] and got[1]["weight"] >= 0.25
    assert abs(sum(c["weight"] for c in got) - 1.0) < 1e-9


def test_a_calibration_set_may_bring_its_own_classifier_columns():
    """`outside_classifier`'s set is scored with a classifier over other characters: `calibrate` takes its gallery
    columns from the set's fourth element, and gives what it gives when those columns are the common ones."""
    rng = np.random.default_rng(0)
    lin, cos = rng.normal(size=(30, 2)), rng.uniform(-0.2, 0.9, (30, 6))
    y = rng.integers(0, 6, 30)
    own = np.array([4, 5])
    assert bundle.calibrate([(lin, cos, y, own)], np.array([0, 1])) == bundle.calibrate([(lin, cos, y)], own)
    assert bundle.calibrate([(lin, cos, y, own)], np.array([0, 1])) != bundle.calibrate([(lin, cos, y)],
                                                                                        np.array([0, 1]))
