"""The one-command detector recipe: a consistent chain of stages, resumable, failing loudly."""

from __future__ import annotations

import sys

import pytest

from training.common import ROOT, load_config
from training.detector import quantize, recipe, train


def _train_config(cmd: tuple[str, ...]):
    assert cmd[:2] == ("-m", "training.detector.train") and len(cmd) == 3
    path = ROOT / train.parser().parse_args([cmd[2]]).config
    return load_config(train.Config, path)


def test_every_stage_continues_an_earlier_one_from_a_committed_config():
    made: set[str] = set()
    names = [s.name for s in recipe.STAGES]
    assert len(set(names)) == len(names)
    for s in recipe.STAGES:
        for cmd in s.commands:
            if cmd[1] == "training.detector.train":
                c = _train_config(cmd)
                assert not c.ship  # only the ship stage writes models/
                assert c.init_path is None or c.init_path.relative_to(ROOT).as_posix() in made  # an earlier stage's
                assert c.out.relative_to(ROOT).as_posix() in s.outputs
            elif cmd[1] == "training.detector.quantize":
                a = quantize.parser().parse_args(list(cmd[2:]))
                assert {a.model, a.pair} <= made and a.out in s.outputs
        made.update(s.outputs)
    first = _train_config(recipe.STAGES[names.index("v1")].commands[0])
    assert first.init == "" and first.minutes == 25 and first.sizes == (320,)
    v13 = [_train_config(c) for c in recipe.STAGES[names.index("v13")].commands]
    assert [c.seed for c in v13] == [51, 53] and all(c.decoys and c.motifs == 0.5 for c in v13)
    assert {c.init for c in v13} == {"v12b"}
    assert names[-2:] == ["ship", "evaluate"]  # the shipped graph is calibrated into models/, then evaluated


def test_plan_skips_what_exists_unless_told_where_to_start(tmp_path):
    assert all(runs for _, runs in recipe.plan(root=tmp_path))
    names = [s.name for s in recipe.STAGES]
    for s in recipe.STAGES[: names.index("v7a") + 1]:
        for o in s.outputs:
            (tmp_path / o).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / o).write_bytes(b"x")
    runs = {s.name: r for s, r in recipe.plan(root=tmp_path)}
    assert not any(runs[n] for n in names[: names.index("v7a") + 1])
    assert all(runs[n] for n in names[names.index("v9a"):])
    again = {s.name: r for s, r in recipe.plan("v6", root=tmp_path)}  # remake v6 and everything after it
    assert not again["v5"] and again["v6"] and again["v7a"] and again["evaluate"]
    with pytest.raises(SystemExit, match="no stage 'v8'"):
        recipe.plan("v8", root=tmp_path)


def test_run_runs_side_by_side_and_stops_on_a_failure(tmp_path):
    both = recipe.Stage("two", (("-c", "open('a', 'w').write('1')"), ("-c", "open('b', 'w').write('2')")), ())
    recipe.run(both, python=sys.executable, root=tmp_path)
    assert (tmp_path / "a").read_text() == "1" and (tmp_path / "b").read_text() == "2"
    bad = recipe.Stage("bad", (("-c", "pass"), ("-c", "import sys; sys.exit(3)")), ())
    with pytest.raises(SystemExit, match=r"stage bad failed \(exit codes \[0, 3\]\).*--from bad"):
        recipe.run(bad, python=sys.executable, root=tmp_path)
