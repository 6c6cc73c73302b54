"""The bot's error table: what a person is told, and how loudly it is logged, for every error that reaches them.

The errors of the recognition core (a bad picture, busy, a bad bundle) are described once in
`inference.errors.TABLE`; this table adds those of the bot's own layer — Discord's app-command checks and HTTP
errors, downloads, storage, the requests the bot turns down (`Refused`) — and falls back to it. The app-command
tree (bot.py), the cogs and the result view (service/render.py) all call `explain` (or `log_error`), so one kind of
error reads the same wherever it happens, and no cog writes its own words for one (tests/bot/test_error_words.py).
`STARTUP` does the same for `python bot.py`: the line it prints and its exit code when it cannot start.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from inference.errors import TABLE as CORE
from inference.errors import UNEXPECTED, BundleError, Described, describe

from .fetch import FetchError
from .storage import StorageError

__all__ = ["STARTUP", "TABLE", "Refused", "explain", "log_error", "startup_failure"]

log = logging.getLogger("crystal_eyes")


# -- requests the bot turns down: each kind carries the facts its words name, the words are the table's ------------
class Refused(app_commands.AppCommandError):
    """A request the bot turns down before doing any work (no picture, a name without letters...)."""


class NoPicture(Refused):
    """/whois with neither `image:` nor `url:`."""


class NotAPicture(Refused):
    """An attachment that is not a picture, by its type and name."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename)
        self.filename = filename


class NoPicturesInMessage(Refused):
    """The context menu on a message without attachments or image links."""


class NameWithoutLetters(Refused):
    """/teach with a name that gives no tag."""


class NotTaught(Refused):
    """/forget of a character this server never taught (`shown`: its display name)."""

    def __init__(self, shown: str) -> None:
        super().__init__(shown)
        self.shown = shown


class NotAnEmoji(Refused):
    """/settings emoji: with something that is not a unicode or server emoji."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class NotYourButtons(Refused):
    """A reply's buttons pressed by someone other than the person who asked."""


class NotYourPages(Refused):
    """/characters' pages turned by someone other than the person who asked."""


class OnlyInAServer(Refused):
    """A command (`what`) that needs a server, used in a direct message."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Usage(Refused):
    """A prefix command with arguments it does not take (`usage`: how it is written)."""

    def __init__(self, usage: str) -> None:
        super().__init__(usage)
        self.usage = usage


class TeachNeedsAHead(Refused):
    """/teach without `whole:True` on a picture it could not use (`cause`: the picture's error)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def cooldown(uses: int, per: float, wait: float) -> app_commands.CommandOnCooldown:
    """The cooldown error of a limit of `uses` per `per` seconds, `wait` seconds before the next try."""
    return app_commands.CommandOnCooldown(app_commands.Cooldown(max(uses, 1), per or 1.0), wait)


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
    (NoPicture, Described("Attach a picture with `image:` or give a link with `url:`.", 400)),
    (NotAPicture, Described(lambda e: f"`{e.filename}` is not a picture (PNG, JPEG, WebP, GIF or BMP).", 415)),
    (NoPicturesInMessage, Described("That message has no pictures (attachments or image links) for me to look at.",
                                    400)),
    (NameWithoutLetters, Described("That name has no letters I can use.", 400)),
    (NotTaught, Described(lambda e: f"This server never taught me **{e.shown}**. `/characters` lists what it taught.",
                          404)),
    (NotAnEmoji, Described(lambda e: f"`{discord.utils.escape_markdown(e.text)[:50]}` is not an emoji I can watch "
                                     "for.", 400)),
    (NotYourButtons, Described("Only the person who asked can use these buttons. Use `/whois` or the **Who is this?** "
                               "menu yourself.", 403)),
    (NotYourPages, Described("Run `/characters` yourself to browse.", 403)),
    (OnlyInAServer, Described(lambda e: f"`{e.what}` only works in a server.", 403)),
    (Usage, Described(lambda e: f"Usage: `{e.usage}`.", 400)),
    (TeachNeedsAHead, Described(lambda e: f"{explain(e.cause)} Try again with `whole:True` if the picture is a head "
                                          "crop.", 400)),
    (commands.NotOwner, Described("Only the bot's owner can do this.", 403)),
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
    """A command's own exception, out of the wrapper the app-command tree or the prefix commands put it in."""
    if isinstance(error, (app_commands.CommandInvokeError, commands.CommandInvokeError)):
        return error.original
    return error


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


# -- python bot.py: why it could not start, one line and an exit code ----------------------------------------------
class StartupError(Exception):
    """The bot cannot start; `STARTUP` has the line it prints and its exit code."""


class ConfigError(StartupError):
    """A variable of the environment (or `.env`) that does not parse; the message names it."""


class MissingToken(ConfigError):
    """DISCORD_TOKEN is not set."""


class UnusableBundle(StartupError):
    def __init__(self, bundle_dir, cause: BundleError) -> None:
        super().__init__(f"{bundle_dir}: {cause}")
        self.bundle_dir, self.cause = bundle_dir, cause


class DiscordUnreachable(StartupError):
    """No connection to Discord (network, DNS, a firewall); `reason`: the first line of the cause."""

    def __init__(self, cause: BaseException) -> None:
        self.reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        super().__init__(self.reason)


# Exit codes: 2 a configuration the bot cannot use, 3 the model bundle, 4 the token, 5 the intent, 6 the network.
STARTUP: tuple[tuple[type[BaseException], Described], ...] = (
    (MissingToken, Described("DISCORD_TOKEN is not set (put it in the environment or in .env; see .env.example)",
                             500, logging.ERROR, 2)),
    (ConfigError, Described("configuration error: {error}", 500, logging.ERROR, 2)),
    (UnusableBundle, Described(lambda e: f"model bundle at {e.bundle_dir} is unusable: {e.cause}", 500,
                               logging.ERROR, 3)),
    (discord.LoginFailure, Described("Discord rejected DISCORD_TOKEN (reset it in the developer portal)", 401,
                                     logging.ERROR, 4)),
    (discord.PrivilegedIntentsRequired, Described(
        "MESSAGE_CONTENT_INTENT=true but the Message Content intent is not enabled for this bot in the developer "
        "portal (Bot -> Privileged Gateway Intents)", 403, logging.ERROR, 5)),
    (DiscordUnreachable, Described(lambda e: f"cannot reach Discord ({e.reason}); check the network and DNS, then "
                                             "start again", 503, logging.ERROR, 6)),
)
STARTUP_ERRORS = tuple(kind for kind, _ in STARTUP)


def startup_failure(error: BaseException) -> tuple[str, int]:
    """The line `python bot.py` prints (after `crystal-eyes: `) and the code it exits with, for `error`."""
    described = describe(error, STARTUP)
    return described.message(error), described.exit_code
