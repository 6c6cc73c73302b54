"""Training runs are configs: every committed config loads into its trainer's dataclass, a key the trainer does
not know is refused, and each trainer's defaults are the shipped run's."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from training.common import load_config

ROOT = Path(__file__).resolve().parents[2]


def trainers():
    from training.detector.train import Config as DetectorConfig
    from training.encoder.train import Config as EncoderConfig
    from training.general.head import Config as HeadConfig
    from training.general.train import Config as GeneralConfig

    return {"encoder": (EncoderConfig, ROOT / "training/encoder/configs"),
            "general": (GeneralConfig, ROOT / "training/general/configs"),
            "head": (HeadConfig, ROOT / "training/general/configs/head"),
            "detector": (DetectorConfig, ROOT / "training/detector/configs")}


@pytest.mark.parametrize("model", ["encoder", "general", "head", "detector"])
def test_every_committed_config_loads(model):
    cls, folder = trainers()[model]
    paths = sorted(folder.glob("*.toml"))
    assert paths, f"no configs in {folder}"
    for path in paths:
        cfg = load_config(cls, path)
        assert cfg.run == path.stem, f"{path.name} names run {cfg.run!r}"


def test_the_encoder_defaults_are_the_shipped_first_member():
    from training.encoder.train import Config

    assert asdict(Config()) == asdict(load_config(Config, ROOT / "training/encoder/configs/xl.toml"))
    classifier_only = load_config(Config, ROOT / "training/encoder/configs/all64.toml")
    assert classifier_only.depths == (1, 2, 2, 2) and classifier_only.heldout == "none"


def test_an_unknown_key_is_refused(tmp_path):
    from training.encoder.train import Config

    (tmp_path / "bad.toml").write_text('run = "bad"\nlearning_rate = 0.1\n')
    with pytest.raises(SystemExit, match="learning_rate"):
        load_config(Config, tmp_path / "bad.toml")


def test_the_general_defaults_are_the_shipped_run():
    from training.general.train import Config

    assert asdict(Config(run="g64m")) == asdict(load_config(Config, ROOT / "training/general/configs/g64m.toml"))


def test_the_detector_defaults_are_the_shipped_picture_pass():
    from training.detector.train import Config

    assert asdict(Config()) == asdict(load_config(Config, ROOT / "training/detector/configs/v13a.toml"))


def test_every_bundle_config_loads_and_names_a_trained_run():
    """A bundle is built from a committed config (training/general/configs/bundle/): each loads into
    `bundle.Config`, names a run trained from a committed config, and builds under runs/."""
    from training.general.bundle import CONFIGS, Config

    paths = sorted(CONFIGS.glob("*.toml"))
    assert paths, f"no configs in {CONFIGS}"
    for path in paths:
        cfg = Config.load(path)
        assert (ROOT / "training/general/configs" / f"{cfg.run}.toml").is_file(), f"{path.name}: no run {cfg.run!r}"
        assert cfg.out.startswith("runs/") and cfg.out_dir.is_relative_to(ROOT / "runs"), f"{path.name}: {cfg.out}"
        assert cfg.version and cfg.base_dir.is_relative_to(ROOT) and cfg.hub_weight >= 0
    assert Config.load(CONFIGS / "mnv2t.toml") == Config(run="mnv2t", out="runs/general/bundle_mnv2t8",
                                                         version="2026.12.08.1")


def test_a_bundle_config_refuses_an_unknown_key(tmp_path):
    from training.general.bundle import Config

    (tmp_path / "bad.toml").write_text('run = "mnv2t"\nhub = 0.5\n')
    with pytest.raises(SystemExit, match="hub"):
        Config.load(tmp_path / "bad.toml")
