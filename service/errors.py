"""The bot's error table: what a person is told, and how loudly it is logged, for every error that reaches them.

The errors of the recognition core (a bad picture, busy, a bad bundle) are described once in
`inference.errors.TABLE`; this table adds those of the bot's own layer — Discord's app-command checks and HTTP
errors, downloads, storage — and falls back to it. The app-command tree (bot.py), the cogs and the result view
(service/render.py) all call `explain`, so one kind of error reads the same wherever it happens.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from inference.errors import TABLE as CORE
from inference.errors import UNEXPECTED, Described, describe

from .fetch import FetchError
from .storage import StorageError

__all__ = ["TABLE", "UserFacingError", "explain", "log_error"]

log = logging.getLogger("crystal_eyes")


class UserFacingError(app_commands.AppCommandError):
    """An error whose message is shown to the user as it is."""


def _permissions(names: list[str], server: bool) -> str:
    words = (p.replace("_", " ").replace("guild", "server") if server else p.replace("_", " ") for p in names)
    return ", ".join(w.title() for w in words)


def _discord_http(error: BaseException) -> str:
    if getattr(error, "status", None) == 429:
        return "Discord is rate-limiting me; try again in a moment."
    return "Discord returned an error; try again in a moment."


TABLE: tuple[tuple[type[BaseException], Described], ...] = (
    (app_commands.CommandOnCooldown, Described(lambda e: f"Slow down a little: try again in {e.retry_after:.0f} s.", 429)),
    (app_commands.MissingPermissions, Described(
        lambda e: f"You need the **{_permissions(e.missing_permissions, True)}** permission to use this command.", 403)),
    (app_commands.BotMissingPermissions, Described(
        lambda e: f"I'm missing the **{_permissions(e.missing_permissions, False)}** permission here; ask a server "
                  "manager to grant it.", 403)),
    (app_commands.NoPrivateMessage, Described("This command only works in a server.", 403)),
    (UserFacingError, Described(lambda e: str(e) or "You can't use this command here.", 400)),
    (app_commands.CheckFailure, Described(lambda e: str(e) or "You can't use this command here.", 403)),
    (discord.Forbidden, Described("Discord refused: I'm missing a permission in this channel (Send Messages, Embed "
                                  "Links or Attach Files).", 502, logging.WARNING)),
    (discord.NotFound, Described("That message or attachment is gone (deleted, or the link expired). Post it again "
                                 "and retry.", 502, logging.WARNING)),
    (discord.HTTPException, Described(_discord_http, 502, logging.WARNING)),
    (FetchError, Described("I couldn't read that picture: {error}", 400)),
    (StorageError, Described("{error}", 503, logging.WARNING)),  # the store logged the cause at ERROR already
    *CORE,
)


def _unwrap(error: BaseException) -> BaseException:
    return error.original if isinstance(error, app_commands.CommandInvokeError) else error


def explain(error: BaseException) -> str:
    """The words for the user about `error` (an app command's wrapped error is unwrapped first)."""
    error = _unwrap(error)
    return describe(error, TABLE).message(error)


def log_error(error: BaseException, where: str) -> str:
    """Log `error` at its table level — with the traceback only when no entry fits it (a bug) — and return the
    words for the user."""
    error = _unwrap(error)
    described = describe(error, TABLE)
    log.log(described.level, "%s: %s: %s", where, type(error).__name__, error,
            exc_info=error if described is UNEXPECTED else None)
    return described.message(error)
