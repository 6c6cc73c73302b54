"""The error table (service/errors.py over inference/errors.py): one set of words and one log level per kind of
error, the same for the tree, the cogs, the view, the CLI and the HTTP API."""

from __future__ import annotations

import logging

import discord
import pytest
from discord import app_commands

from inference import errors as core
from inference.pipeline import NoHeadError
from service.errors import TABLE, explain, log_error
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
