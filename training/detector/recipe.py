"""The shipped detector from nothing, in one command: every stage that made it, in order.

    python -m training.detector.recipe --dry-run          # print the commands
    python -m training.detector.recipe                    # run them (about 8.5 hours on 2 CPU cores)
    python -m training.detector.recipe --from v12b        # make that stage and the later ones again

The detector was not trained in one go: each version continued the one before with a new idea (larger inputs,
motif negatives, checked boxes, decoys, labels fixed by eye; docs/experiments/detector.md), and each was shipped by a rule
set before evaluating it. This runs the same chain from the same configs (training/detector/configs/), the two v13 runs side by side (one core
each), then makes the shipped graph (v13a on the picture and v13b on its mirror), calibrates it into `models/`
and evaluates it on the held-out set.

What it reproduces is the recipe, not the bytes: training runs for a time budget (`--minutes`), so the step count
depends on the machine, and every stage trains on today's labels (the by-eye fixes and checked boxes came in
late; the early stages were trained without them). Without --from a stage whose outputs already exist is skipped,
so a stopped run goes on where it stopped; --from STAGE runs that stage and every later one whatever exists.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from training.detector.common import ROOT, RUNS

RUN = RUNS.relative_to(ROOT).as_posix()  # the trainers' folder, relative: the commands run in the project root


@dataclass(frozen=True)
class Stage:
    name: str
    commands: tuple[tuple[str, ...], ...]  # run side by side when more than one
    outputs: tuple[str, ...]  # relative to the project root; the stage is skipped when they all exist


CONFIGS = Path(__file__).with_name("configs")


def train(name: str) -> tuple[str, ...]:
    """The command of one detector run: its committed config (training/detector/configs/<name>.toml)."""
    return ("-m", "training.detector.train", (CONFIGS / f"{name}.toml").relative_to(ROOT).as_posix())


def stage(name: str) -> Stage:
    return Stage(name, (train(name),), (f"{RUN}/{name}.pt",))


STAGES: tuple[Stage, ...] = (
    Stage("label", (("-m", "training.detector.label"),), (f"{RUN}/teacher_raw.json", f"{RUN}/cascade_verified.json")),
    Stage("paste_box", (("-m", "training.detector.paste_box"),), (f"{RUN}/paste_box.json",)),
    *(stage(n) for n in ("v1", "v2", "v3", "v4", "v5", "v6", "v7a", "v9a", "v11a", "v12b")),
    Stage("v13", (train("v13a"), train("v13b")), (f"{RUN}/v13a.pt", f"{RUN}/v13b.pt")),  # one core each
    Stage("pair", (("-m", "training.detector.quantize", f"{RUN}/v13a.pt", f"{RUN}/v13ab_pair_int8.onnx", "--pair",
                    f"{RUN}/v13b.pt"),), (f"{RUN}/v13ab_pair_int8.onnx",)),
    Stage("ship", (("-m", "training.detector.ship", f"{RUN}/v13ab_pair_int8.onnx", "--sizes", "448"),), ()),
    Stage("evaluate", (("-m", "training.detector.evaluate", "--write"),), ()),
)


def plan(start: str | None = None, root: Path = ROOT) -> list[tuple[Stage, bool]]:
    """The stages, each with whether it runs: from `start` on all of them; without `start`, those whose outputs
    are not all there yet (a stage without outputs, such as ship, always runs)."""
    names = [s.name for s in STAGES]
    if start is not None:
        if start not in names:
            raise SystemExit(f"no stage {start!r}; the stages: {', '.join(names)}")
        return [(s, i >= names.index(start)) for i, s in enumerate(STAGES)]
    return [(s, not s.outputs or not all((root / o).exists() for o in s.outputs)) for s in STAGES]


def run(stage: Stage, python: str = sys.executable, root: Path = ROOT) -> None:
    """Run a stage's commands (side by side when several) and fail loudly if one fails."""
    procs = [subprocess.Popen([python, *c], cwd=root) for c in stage.commands]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"stage {stage.name} failed (exit codes {codes}); fix it and go on with --from {stage.name}")


def main() -> None:
    ap = argparse.ArgumentParser(description="train the shipped detector from nothing (module docstring)")
    ap.add_argument("--dry-run", action="store_true", help="print the stages' commands, run nothing")
    ap.add_argument("--from", dest="start", help="start at this stage")
    a = ap.parse_args()
    for s, runs in plan(a.start):
        side = " &  " if len(s.commands) > 1 else ""
        text = side.join("python " + shlex.join(c) for c in s.commands)
        print(f"[{s.name}] {'' if runs else '(skipped) '}{text}", flush=True)
        if runs and not a.dry_run:
            run(s)


if __name__ == "__main__":
    main()
