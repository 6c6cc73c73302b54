import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "inference", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_whois_json_lines_errors_and_exit_code(tiny_bundle, shared, tmp_path):
    good = shared / "scenes" / "misc" / "kiyoshimu-test0.jpg"
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture at all")
    out = tmp_path / "out"
    p = cli("whois", "--json", "--top", "4", "--bundle", tiny_bundle, "--out", out, good, bad, good)
    assert p.returncode == 1, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["image"] for x in lines] == [str(good), str(bad), str(good)]
    assert "not a picture" in lines[1]["error"]
    head = lines[0]["heads"][0]
    assert head["box"] == [128, 96, 384, 384] and len(head["candidates"]) == 4
    # who each candidate is: the tag, its display form and its work (null when the tag names none)
    first = head["candidates"][0]
    assert {"name", "display", "series", "probability"} <= set(first) <= {"name", "display", "series", "probability",
                                                                          "url"}
    assert (out / "kiyoshimu-test0.png").read_bytes().startswith(b"\x89PNG")
    ok = cli("whois", "--bundle", tiny_bundle, "--whole-image", good)
    assert ok.returncode == 0 and "1 head(s)" in ok.stdout


def test_enroll_then_whois_with_gallery(tiny_bundle, shared, tmp_path):
    pic = shared / "scenes" / "misc" / "kiyoshimu-head1.jpg"
    gallery = tmp_path / "g.npz"
    e = cli("enroll", "--bundle", tiny_bundle, "--gallery", gallery, "--character", "Lelouch Lamperouge",
            "--whole-image", pic)
    assert e.returncode == 0, e.stderr
    assert "lelouch_lamperouge" in e.stdout and gallery.exists()
    w = cli("whois", "--json", "--whole-image", "--bundle", tiny_bundle, "--gallery", gallery, pic)
    assert json.loads(w.stdout)["heads"][0]["candidates"][0]["name"] == "lelouch_lamperouge"


def test_eval_on_labeled_folder(tiny_bundle, shared, tmp_path):
    folder = tmp_path / "labeled"
    for name in ("c.c.", "rem_(re:zero)"):
        (folder / name).mkdir(parents=True)
    (folder / "c.c." / "a.jpg").write_bytes((shared / "scenes/misc/kiyoshimu-head1.jpg").read_bytes())
    (folder / "rem_(re:zero)" / "b.jpg").write_bytes((shared / "scenes/misc/kiyoshimu-test0.jpg").read_bytes())
    p = cli("eval", "--json", "--whole-image", "--bundle", tiny_bundle, folder)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["images"] == 2 and r["top5"] == 1.0  # 5 classes: the truth is always in the top 5
    assert 0 <= r["top1"] <= r["top3"] <= r["top5"]
    assert set(r["per_character"]) == {"c.c.", "rem_(re:zero)"} and r["skipped"] == 0
    assert "eval: 2/2 pictures" in p.stderr  # progress


def test_eval_says_why_it_skips(tiny_bundle, shared, tmp_path):
    folder = tmp_path / "labeled"
    for name in ("c.c.", "somebody_else"):
        (folder / name).mkdir(parents=True)
    (folder / "c.c." / "a.jpg").write_bytes((shared / "scenes/misc/kiyoshimu-head1.jpg").read_bytes())
    (folder / "c.c." / "broken.jpg").write_bytes(b"not a picture")
    (folder / "somebody_else" / "b.jpg").write_bytes((shared / "scenes/misc/kiyoshimu-test0.jpg").read_bytes())
    p = cli("eval", "--whole-image", "--bundle", tiny_bundle, folder)
    assert p.returncode == 0, p.stderr
    assert "character  images  top-1  top-3" in p.stdout and "c.c." in p.stdout
    assert "skipped 1 picture(s) of 1 character(s) this bundle does not know" in p.stdout
    assert "somebody_else (1)" in p.stdout and "broken.jpg:" in p.stdout
    j = json.loads(cli("eval", "--json", "--whole-image", "--bundle", tiny_bundle, folder).stdout)
    assert j["skipped_unknown_character"] == 1 and j["skipped_unreadable"] == 1
    assert j["unknown_characters"] == {"somebody_else": 1}


def test_bundle_error_is_one_clear_line(tmp_path, shared):
    p = cli("whois", "--bundle", tmp_path, shared / "scenes/misc/kiyoshimu-test0.jpg")
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: No model bundle") and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("top", ["0", "99"])
def test_top_out_of_range(tiny_bundle, top, shared):
    p = cli("whois", "--top", top, "--bundle", tiny_bundle, shared / "scenes/misc/kiyoshimu-test0.jpg")
    assert p.returncode == 2 and "--top" in p.stderr


def test_out_is_a_file_for_one_picture_and_a_directory_otherwise(tiny_bundle, shared, tmp_path):
    good = shared / "scenes" / "misc" / "kiyoshimu-test0.jpg"
    p = cli("whois", "--bundle", tiny_bundle, "--out", tmp_path / "annotated.png", good)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "annotated.png").is_file() and (tmp_path / "annotated.png").read_bytes()[:4] == b"\x89PNG"
    assert f"annotated picture -> {tmp_path / 'annotated.png'}" in p.stderr
    j = cli("whois", "--bundle", tiny_bundle, "--out", tmp_path / "sub" / "a.jpg", good)
    assert j.returncode == 0 and (tmp_path / "sub" / "a.jpg").read_bytes()[:2] == b"\xff\xd8"
    many = cli("whois", "--bundle", tiny_bundle, "--out", tmp_path / "two.png", good, good)
    assert many.returncode == 2 and "names one picture" in many.stderr and not (tmp_path / "two.png").exists()
    d = cli("whois", "--bundle", tiny_bundle, "--out", tmp_path / "dir", good)
    assert d.returncode == 0 and (tmp_path / "dir" / "kiyoshimu-test0.png").is_file()
    assert f"-> {tmp_path / 'dir' / 'kiyoshimu-test0.png'}" in d.stderr


def test_a_shrunk_picture_is_said_to_be_shrunk(tiny_bundle, shared, tmp_path):
    from PIL import Image

    big = tmp_path / "big.jpg"
    Image.open(shared / "scenes" / "misc" / "kiyoshimu-test0.jpg").convert("RGB").resize((4096, 2304)).save(big)
    p = cli("whois", "--bundle", tiny_bundle, "--out", tmp_path / "a.png", big)
    assert p.returncode == 0, p.stderr
    assert "drawn at 2048x1152" in p.stderr and "4096x2304" in p.stderr
    assert Image.open(tmp_path / "a.png").size == (2048, 1152)
