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
