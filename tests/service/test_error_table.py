"""The error table (service/errors.py over inference/errors.py): one set of words and one log level per kind of
error, the same for the tree, the cogs, the view, the CLI and the HTTP API."""

from __future__ import annotations

import logging

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from inference import errors as core
from inference.pipeline import NoHeadError
from service import errors as bot_errors
from service.errors import STARTUP, TABLE, explain, log_error, startup_failure
from service.fetch import FetchError
from service.remote import Unavailable
from service.storage import StorageError


class FakeResponse:
    status, reason = 429, "Too Many Requests"


@pytest.mark.parametrize(("error", "words"), [
    (core.CorruptImageError("the file is cut short"), "I couldn't read that picture: the file is cut short"),
    (NoHeadError("No head found"), "I couldn't read that picture: No head found"),
    (FetchError("Only https:// links"), "I couldn't read that picture: Only https:// links"),
    (core.Busy(), "I'm busy with other pictures right now, try again in a moment."),
    (Unavailable("HTTP 503"), "The recognition service is busy or not answering right now; try again in a moment."),
    (StorageError("Could not save the settings; try again."), "Could not save the settings; try again."),
    (discord.HTTPException(FakeResponse(), "slow down"), "Discord is rate-limiting me; try again in a moment."),
    (app_commands.NoPrivateMessage(), "This command only works in a server."),
    (RuntimeError("a bug with /work/secret in it"), "Something went wrong on my side; it has been logged."),
])
def test_each_error_has_its_words(error, words):
    assert explain(error) == words
    wrapped = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    wrapped.original = error  # how the tree hands over a command's exception
    assert explain(wrapped) == words


def test_only_unexpected_errors_carry_a_traceback(caplog):
    with caplog.at_level(logging.INFO, logger="crystal_eyes"):
        log_error(core.NotAnImageError("not a picture"), "/whois by user 1")
        log_error(ZeroDivisionError("oops"), "/whois by user 2")
    quiet, loud = caplog.records
    assert (quiet.levelno, quiet.exc_info, quiet.getMessage()) == (
        logging.INFO, None, "/whois by user 1: NotAnImageError: not a picture")
    assert loud.levelno == logging.ERROR and loud.exc_info[0] is ZeroDivisionError


def test_the_table_reaches_every_surface():
    # each kind appears once; the bot's entries come before the core ones they fall back to
    kinds = [kind for kind, _ in TABLE]
    assert len(kinds) == len(set(kinds)) and kinds[-len(core.TABLE):] == [k for k, _ in core.TABLE]
    # the HTTP API's statuses and the CLI's exit codes come from the same entries
    assert core.describe(core.ImageTooLargeError("big")).status == 413
    assert core.describe(core.NotAnImageError("text")).status == 415
    assert core.describe(Unavailable("down")).status == 503
    assert core.describe(core.BundleError("gone")).exit_code == 2 and core.describe(core.Busy()).exit_code == 1


@pytest.mark.parametrize(("error", "words"), [
    (bot_errors.NotAPicture("notes.txt"), "`notes.txt` is not a picture (PNG, JPEG, WebP, GIF or BMP)."),
    (bot_errors.NotTaught("Kiyo Girl"), "This server never taught me **Kiyo Girl**. `/characters` lists what it taught."),
    (bot_errors.NotAnEmoji("not*an*emoji"), "`not\\*an\\*emoji` is not an emoji I can watch for."),
    (bot_errors.OnlyInAServer("@bot sync guild"), "`@bot sync guild` only works in a server."),
    (bot_errors.Usage("@bot sync [global|guild|clear]"), "Usage: `@bot sync [global|guild|clear]`."),
    (bot_errors.TeachNeedsAHead(NoHeadError("No head found")),
     "I couldn't read that picture: No head found Try again with `whole:True` if the picture is a head crop."),
    (bot_errors.cooldown(4, 30.0, 12.4), "Slow down a little: try again in 12 s."),
    (commands.NotOwner(), "Only the bot's owner can do this."),
])
def test_the_bots_refusals_have_their_words(error, words):
    assert explain(error) == words


def test_every_refusal_has_an_entry_of_its_own():
    kinds = [k for k in vars(bot_errors).values() if isinstance(k, type) and issubclass(k, bot_errors.Refused)
             and k is not bot_errors.Refused]
    assert len(kinds) >= 10
    described = [core.describe(k.__new__(k), TABLE) for k in kinds]
    assert core.UNEXPECTED not in described
    assert all(d is dict(TABLE)[k] for d, k in zip(described, kinds, strict=True))  # not a parent's words


def test_a_prefix_commands_error_is_unwrapped():
    wrapped = commands.CommandInvokeError(discord.HTTPException(FakeResponse(), "slow down"))
    assert explain(wrapped) == "Discord is rate-limiting me; try again in a moment."


def test_startup_failures_have_one_line_and_an_exit_code_each(tmp_path):
    class Response:
        status, reason = 401, "Unauthorized"

    cases = [
        (bot_errors.MissingToken(), 2, "DISCORD_TOKEN is not set"),
        (bot_errors.ConfigError("WORKERS must be a whole number, got 'many'"), 2,
         "configuration error: WORKERS must be a whole number"),
        (bot_errors.UnusableBundle(tmp_path, core.BundleError("no manifest.json")), 3,
         f"model bundle at {tmp_path} is unusable: no manifest.json"),
        (discord.LoginFailure("Improper token has been passed."), 4, "Discord rejected DISCORD_TOKEN"),
        (discord.PrivilegedIntentsRequired(None), 5, "MESSAGE_CONTENT_INTENT=true but"),
        (bot_errors.DiscordUnreachable(OSError("Connect call failed\nmore")), 6,
         "cannot reach Discord (Connect call failed); check the network"),
        (bot_errors.DiscordUnreachable(TimeoutError()), 6, "cannot reach Discord (TimeoutError)"),
    ]
    for error, code, start in cases:
        line, exit_code = startup_failure(error)
        assert (exit_code, "\n" in line) == (code, False) and line.startswith(start), (error, line)
    assert sorted({d.exit_code for _, d in STARTUP}) == [2, 3, 4, 5, 6]
