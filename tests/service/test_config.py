"""`.env.example` documents every variable, and a copy of it is a valid configuration."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from inference.settings import Settings
from service.config import BotConfig

ROOT = Path(__file__).resolve().parents[2]
READERS = [ROOT / "inference" / "settings.py", ROOT / "service" / "config.py"]
VAR = re.compile(r"""(?:_int|_float|_ids|_bool|_rate|os\.environ\.get)\(\s*["']([A-Z_]+)["']""")


def documented() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def commented_out() -> set[str]:
    """Variables the example documents but leaves unset (`# NAME=value`), such as HEALTH_FILE."""
    return {line[1:].split("=", 1)[0].strip() for line in (ROOT / ".env.example").read_text().splitlines()
            if re.match(r"#\s*[A-Z][A-Z0-9_]+=", line)}


def test_every_variable_read_is_documented():
    read = {name for path in READERS for name in VAR.findall(path.read_text())}
    assert {"DISCORD_TOKEN", "DATA_DIR", "MESSAGE_CONTENT_INTENT", "COOLDOWN_USER"} <= read
    assert read - set(documented()) - commented_out() == set()


def test_a_copy_of_the_example_is_valid(monkeypatch):
    for key in list(os.environ):
        if key in documented():
            monkeypatch.delenv(key)
    for key, value in documented().items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(env_file=None)
    config = BotConfig.from_env()
    assert config.discord_token == "" and config.data_dir.name == "data" and config.owner_ids == frozenset()
    assert settings.workers == 1 and settings.queue_size == 8 and settings.unsure_threshold is None
    assert config == BotConfig()  # the example shows the defaults


@pytest.mark.parametrize(
    ("value", "parsed"), [("3/30", (3, 30.0)), ("0", (0, 0.0)), ("off", (0, 0.0)), ("", BotConfig.user_cooldown)]
)
def test_cooldown_syntax(monkeypatch, value, parsed):
    monkeypatch.setenv("COOLDOWN_USER", value)
    assert BotConfig.from_env().user_cooldown == parsed


@pytest.mark.parametrize(("var", "value"), [("COOLDOWN_USER", "3 per 30"), ("COOLDOWN_GUILD", "-1/5"),
                                            ("MESSAGE_CONTENT_INTENT", "sometimes"), ("MAX_PICTURES", "four"),
                                            ("SHARD_COUNT", "two"), ("INFERENCE_URL", "inference:8000"),
                                            ("INFERENCE_TIMEOUT", "soon"), ("INFERENCE_RETRIES", "-1"),
                                            ("INFERENCE_CONCURRENCY", "0")])
def test_bad_values_name_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        BotConfig.from_env()


def test_the_bot_only_options_live_in_the_bot_config(monkeypatch):
    """The token, the owners, the state directory and the download limit are the bot's: the core settings (read
    by the CLI and the HTTP API too) hold none of them, and the token is never printed."""
    from dataclasses import fields

    core = {f.name for f in fields(Settings)}
    assert not core & {"discord_token", "owner_ids", "data_dir", "url_max_bytes"}
    monkeypatch.setenv("DISCORD_TOKEN", " abc.def.ghi ")
    monkeypatch.setenv("OWNER_IDS", "12, 34;56")
    monkeypatch.setenv("DATA_DIR", "/srv/state")
    monkeypatch.setenv("URL_MAX_BYTES", "2048")
    config = BotConfig.from_env()
    assert config.discord_token == "abc.def.ghi" and config.owner_ids == frozenset({12, 34, 56})
    assert str(config.data_dir) == "/srv/state" and config.url_max_bytes == 2048
    assert "abc.def.ghi" not in repr(config) and "discord_token" not in config.public()
    assert config.public()["owner_ids"] == frozenset({12, 34, 56})
    monkeypatch.setenv("OWNER_IDS", "me")
    with pytest.raises(ValueError, match="OWNER_IDS"):
        BotConfig.from_env()


def test_one_boolean_parser_for_every_setting(monkeypatch):
    """The bot's and the pipeline's true/false variables read alike: empty is the default, as in .env.example."""
    from inference.settings import Settings

    for raw, want in (("", False), ("on", True), ("0", False), ("YES", True)):
        monkeypatch.setenv("MESSAGE_CONTENT_INTENT", raw)
        monkeypatch.setenv("VERIFY_HEADS", raw)
        assert BotConfig.from_env().message_content is want
        assert Settings.from_env(env_file=None).verify_heads is (True if raw == "" else want)
