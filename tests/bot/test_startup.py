"""`python bot.py`: a missing token or an unusable bundle -> one clear line and a non-zero exit; the token
never reaches the logs; DATA_DIR decides where state lives."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import discord
import pytest

import bot as bot_module

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.SECRET.do-not-log-this-token-value"


def run_bot(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "BUNDLE_DIR", "DATA_DIR"}}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py")], cwd=tmp_path, env={**base, **env}, capture_output=True, text=True,
        timeout=120,
    )


def test_missing_token(tmp_path):
    proc = run_bot(tmp_path, DISCORD_TOKEN="")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["crystal-eyes: DISCORD_TOKEN is not set (put it in the environment or in .env; see .env.example)"]


def test_token_from_dotenv_and_missing_bundle(tmp_path):
    (tmp_path / ".env").write_text(f"DISCORD_TOKEN={TOKEN}\nBUNDLE_DIR={tmp_path / 'nowhere'}\n")
    proc = run_bot(tmp_path)
    assert proc.returncode == 3
    out = proc.stdout + proc.stderr
    assert "crystal-eyes: model bundle at" in out and "is unusable" in out
    assert len(proc.stderr.strip().splitlines()) == 1
    assert TOKEN not in out and "SECRET" not in out


def test_corrupt_bundle(tmp_path, tiny_bundle):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    with open(bundle / "encoder.onnx", "ab") as f:
        f.write(b"tampered")
    proc = run_bot(tmp_path, DISCORD_TOKEN=TOKEN, BUNDLE_DIR=str(bundle))
    assert proc.returncode == 3
    assert "is unusable" in proc.stderr and TOKEN not in proc.stdout + proc.stderr


def test_create_bot_reads_the_environment_and_does_not_connect(tmp_path, tiny_bundle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BUNDLE_DIR", str(tiny_bundle))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MESSAGE_CONTENT_INTENT", "true")
    monkeypatch.setenv("COOLDOWN_USER", "2/10")
    bot = bot_module.create_bot()
    assert isinstance(bot, discord.ext.commands.Bot)
    assert not bot.is_ready() and bot.ws is None
    assert bot.storage.path == tmp_path / "state" / "crystal-eyes.sqlite3"
    assert bot.intents.message_content and not bot.intents.members and not bot.intents.presences
    assert bot.limiter.user == (2, 10.0)
    assert bot.pipeline.labels  # the bundle was loaded


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_token_never_reaches_the_logs(tmp_path, tiny_bundle, monkeypatch, caplog, capsys, restore_root_logger):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("BUNDLE_DIR", str(tiny_bundle))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))

    def fake_run(self, token, **kwargs):
        assert token == TOKEN  # the token is used...
        logging.getLogger("discord.client").info("logging in using static token")
        logging.getLogger("discord.gateway").warning("a library leaking it: %s", token)
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(bot_module.CrystalEyes, "run", fake_run)
    with caplog.at_level(logging.DEBUG):
        assert bot_module.main() == 4
    captured = capsys.readouterr()
    assert "Discord rejected DISCORD_TOKEN" in captured.err
    logged = caplog.text + captured.out + captured.err
    assert "settings:" in caplog.text  # settings are logged...
    assert TOKEN not in logged and "SECRET" not in logged  # ...without the token
    assert "a library leaking it: [token redacted]" in captured.err


@pytest.mark.parametrize(("var", "value"), [("WORKERS", "many"), ("COOLDOWN_USER", "often"), ("MESSAGE_CONTENT_INTENT", "maybe")])
def test_a_bad_variable_is_one_clear_line(tmp_path, var, value):
    proc = run_bot(tmp_path, DISCORD_TOKEN=TOKEN, **{var: value})
    assert proc.returncode == 2
    assert proc.stderr.startswith("crystal-eyes: configuration error:") and var in proc.stderr


async def test_heartbeat_file_for_the_container_healthcheck(tmp_path, make_bot):
    import simcord

    health = tmp_path / "health"
    async with simcord.run(make_bot(health_file=str(health))) as env:
        await env.advance_time(31)
        assert health.is_file() and float(health.read_text()) > 0


def test_no_route_to_discord_is_one_clear_line(tmp_path, tiny_bundle, monkeypatch, capsys, restore_root_logger):
    """With no network the login's real aiohttp connection fails (here: Discord's API pointed at a closed port on
    127.0.0.1): one line on stderr and exit code 6, no traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "abc.def.ghi")
    monkeypatch.setenv("BUNDLE_DIR", str(tiny_bundle))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(discord.http.Route, "BASE", "http://127.0.0.1:9/api/v10")
    assert bot_module.main() == 6
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("crystal-eyes:")]
    assert len(lines) == 1 and "cannot reach Discord" in lines[0]
    assert "Traceback" not in err
