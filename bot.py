"""Crystal Eyes, the Discord bot.

`create_bot()` builds the bot without connecting (tests drive it with SimCord); `python bot.py` runs it with
DISCORD_TOKEN from the environment or `.env`. Everything slow (inference, gallery files) runs in a bounded
executor; the cogs in `cogs/` are thin adapters over the services in `service/`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands, tasks

from inference.memory import freeze_startup_heap, unfreeze_heap
from inference.settings import Settings
from service.config import BotConfig
from service.cooldown import Limiter
from service.errors import (
    STARTUP_ERRORS,
    ConfigError,
    DiscordUnreachable,
    MissingToken,
    UnusableBundle,
    log_error,
    startup_failure,
)
from service.fetch import SafeFetcher
from service.recognizer import Recognizer
from service.storage import Galleries, GuildSettings, Storage

log = logging.getLogger("crystal_eyes")

EXTENSIONS = ("cogs.recognition", "cogs.admin", "cogs.gallery", "cogs.owner")


class Tree(app_commands.CommandTree):
    """The global app-command error handler: one short message to the user, one log line (service/errors.py)."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        command = interaction.command.qualified_name if interaction.command else "?"
        await self.reply_error(interaction, log_error(error, f"/{command} by user {interaction.user.id}"))

    @staticmethod
    async def reply_error(interaction: discord.Interaction, text: str) -> None:
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:  # the interaction expired, or the channel is gone
            log.warning("could not deliver an error message: %s", exc)


class CrystalEyes(commands.Bot):
    def __init__(self, settings: Settings, pipeline: Any, config: BotConfig) -> None:
        intents = discord.Intents.default()  # guilds, guild messages, guild reactions; no privileged intent
        intents.message_content = config.message_content
        intents.typing = False
        intents.presences = False
        intents.members = False
        sharding = {} if config.shard_count is None else {"shard_count": config.shard_count,
                                                          "shard_ids": list(config.shard_ids or range(config.shard_count))}
        super().__init__(
            **sharding,
            command_prefix=commands.when_mentioned,  # `@bot sync` works without the message-content intent
            intents=intents,
            tree_cls=Tree,
            help_command=None,
            owner_ids=set(config.owner_ids) or None,
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=200,
        )
        self.settings = settings
        self.config = config
        self.pipeline = pipeline
        if config.inference_url:  # the models run in the recognition service (inference/adapters/serve.py)
            from service.remote import RemoteRecognizer

            self.recognizer = RemoteRecognizer(pipeline, workers=config.inference_concurrency,
                                               queue_size=settings.queue_size)
        else:
            self.recognizer = Recognizer(pipeline, workers=settings.workers, queue_size=settings.queue_size)
        defaults = GuildSettings(threshold=settings.unsure_threshold, top_k=max(1, min(10, settings.top_k)))
        if config.database_url:  # several processes share one PostgreSQL database (docs/scaling.md)
            from service.postgres import Database, PostgresGalleryFiles, PostgresLimiter, PostgresSettings

            self.database = Database(config.database_url)
            self.storage = Storage(config.data_dir, defaults, backend=PostgresSettings(self.database))
            self.galleries = Galleries(None, pipeline, files=PostgresGalleryFiles(self.database))
            self.limiter = PostgresLimiter(self.database, config.user_cooldown, config.guild_cooldown)
        else:
            self.database = None
            self.storage = Storage(config.data_dir, defaults)
            self.galleries = Galleries(config.data_dir / "galleries", pipeline)
            self.limiter = Limiter(config.user_cooldown, config.guild_cooldown)
        self.fetcher = SafeFetcher(config.url_max_bytes)
        self.failed_extensions: dict[str, str] = {}

    async def setup_hook(self) -> None:
        if self.config.inference_url:
            await self._check_inference()
        if await asyncio.to_thread(self.storage.open) and self.database is not None:
            log.info("%d server galleries loaded from PostgreSQL", await asyncio.to_thread(self.galleries.preload))
        for name in EXTENSIONS:
            try:
                await self.load_extension(name)
            except Exception as exc:  # one broken cog never takes the bot down
                self.failed_extensions[name] = f"{type(exc).__name__}: {exc}"
                log.exception("extension %s failed to load; continuing without it", name)
        if self.config.health_file:
            self.heartbeat.start()
        frozen = freeze_startup_heap()  # keeps full GC pauses on the event loop short (tests/bot/test_hostile.py)
        log.info(
            "ready to serve: %d characters, %d worker(s), queue %d, message-content intent %s, %d startup objects frozen",
            len(self.pipeline.characters),
            self.recognizer.workers,
            self.recognizer.capacity - self.recognizer.workers,
            "on" if self.intents.message_content else "off",
            frozen,
        )

    async def _check_inference(self) -> None:
        """Say at start whether the recognition service is up and runs this bundle; down is not fatal (requests
        get the busy answer until it is back), another model is logged as an error."""
        from inference.errors import BundleError
        from service.remote import Unavailable

        try:
            health = await asyncio.to_thread(self.pipeline.check)
            log.info("recognition service %s: %s %s", self.config.inference_url, health.get("name"),
                     health.get("version"))
        except Unavailable as exc:
            log.warning("recognition service %s is not answering yet (%s)", self.config.inference_url, exc.why)
        except BundleError as exc:
            log.error("%s", exc)

    @tasks.loop(seconds=30)
    async def heartbeat(self) -> None:
        """Touch HEALTH_FILE while the gateway connection is alive (the container's HEALTHCHECK reads it)."""
        if self.is_ready() and not self.is_closed() and math.isfinite(self.latency):
            try:
                Path(self.config.health_file).write_text(f"{time.time():.0f}\n")
            except OSError as exc:
                log.warning("could not write the health file %s: %s", self.config.health_file, exc)

    @heartbeat.before_loop
    async def _before_heartbeat(self) -> None:
        await self.wait_until_ready()

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d guild(s)", self.user, getattr(self.user, "id", "?"), len(self.guilds))

    async def close(self) -> None:
        try:
            self.heartbeat.cancel()
            await self.fetcher.close()
            self.release()
        finally:
            unfreeze_heap()
            await super().close()

    def release(self) -> None:
        """Stop what this bot runs besides its Discord connection: inference workers, the settings store and
        (DATABASE_URL) the PostgreSQL connection and its listener thread. Safe to call more than once."""
        self.recognizer.close()
        self.storage.close()
        if self.database is not None:
            self.database.close()


class RedactToken(logging.Filter):
    """Defence in depth: nothing we log contains the token, but a library's debug line might. Replace it."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg, record.args = message.replace(self.token, "[token redacted]"), ()
            if record.exc_info and not record.exc_text:
                # Formatters render the traceback only after the filters ran: render it now, to redact it.
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text and self.token in record.exc_text:
                record.exc_text = record.exc_text.replace(self.token, "[token redacted]")
        return True


def load_pipeline(settings: Settings, config: BotConfig | None = None):
    if config is not None and config.inference_url:  # facts only; the service runs the models
        from service.remote import RemoteModel

        return RemoteModel.connect(settings, config)
    from inference.pipeline import Pipeline

    return Pipeline.from_bundle(settings.bundle_dir, settings=settings)


class ShardedCrystalEyes(CrystalEyes, commands.AutoShardedBot):
    """The bot on several gateway shards (SHARD_COUNT, SHARD_IDS); run one process per group of shards, all on
    one DATABASE_URL."""


def create_bot(settings: Settings | None = None, *, pipeline: Any = None, config: BotConfig | None = None) -> CrystalEyes:
    """Build the bot (loading the model bundle) without connecting. Raises BundleError for a bad bundle."""
    settings = settings or Settings.from_env()
    config = config or BotConfig.from_env()
    if pipeline is None:
        pipeline = load_pipeline(settings, config)
    cls = ShardedCrystalEyes if config.shard_count is not None else CrystalEyes
    return cls(settings, pipeline, config)


def start() -> int:
    """Read the configuration, load the bundle and run until the bot is closed. What stops it before that is one
    of `service.errors.STARTUP`'s kinds."""
    from inference.errors import BundleError

    try:
        settings = Settings.from_env()
        config = BotConfig.from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    discord.utils.setup_logging(level=getattr(logging, settings.log_level, logging.INFO), root=True)
    redact = RedactToken(config.discord_token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    if not config.discord_token:
        raise MissingToken()
    try:
        bot = create_bot(settings, config=config)
    except BundleError as exc:
        raise UnusableBundle(settings.bundle_dir, exc) from None
    log.info("settings: %s", {k: str(v) for k, v in {**settings.public(), **config.public()}.items()})
    try:
        bot.run(config.discord_token, log_handler=None)
    except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
        raise DiscordUnreachable(exc) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python bot.py`: 0 after a clean stop; otherwise one line on stderr and the exit code of the error table's
    `STARTUP` (service/errors.py)."""
    try:
        return start()
    except STARTUP_ERRORS as exc:
        line, code = startup_failure(exc)
        print(f"crystal-eyes: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
