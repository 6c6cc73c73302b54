"""The four ways to ask "who is this?": /whois, the message context menu, a reaction, a watched channel.

Thin adapter: collect the pictures of the interaction or message, hand them to the recognizer, render the
reply with `service.render`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from inference.decode import check_size
from service import render
from service.bounded import LiveViews, RecentIds
from service.errors import NoPicture, NoPicturesInMessage, NotAPicture, cooldown, explain, log_error
from service.fetch import FetchError
from service.recognizer import Busy
from service.render import Picture

if TYPE_CHECKING:
    from bot import CrystalEyes

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif")
UPLOAD_MARGIN = 64 * 1024  # room for the multipart envelope and the embed
# Reply buttons stay live for 10 minutes; cap how many (and how many picture bytes, kept by "Try the whole
# picture") live at once, so a flood of requests cannot grow memory without bound. The oldest expire early.
MAX_LIVE_VIEWS = 500
MAX_HELD_BYTES = 64 * 1024 * 1024
HANDLED_CAP = 1000  # message ids remembered by the reaction / watch triggers


@dataclass(frozen=True)
class Source:
    """A picture not yet downloaded: an attachment or a link."""

    label: str
    attachment: discord.Attachment | None = None
    url: str | None = None
    spoiler: bool = False


def is_image_attachment(a: discord.Attachment) -> bool:
    ctype = (a.content_type or "").lower()
    return ctype.startswith("image/") or a.filename.lower().endswith(IMAGE_EXTENSIONS)


def message_sources(message: discord.Message) -> list[Source]:
    """Every picture of a message: image attachments, then image embeds (links Discord previewed)."""
    out = [
        Source(label=a.filename, attachment=a, spoiler=a.is_spoiler())
        for a in message.attachments
        if is_image_attachment(a)
    ]
    seen = set()
    for e in message.embeds:
        url = None
        if e.type in ("image", "gifv") and e.thumbnail and (e.thumbnail.proxy_url or e.thumbnail.url):
            url = e.thumbnail.proxy_url or e.thumbnail.url
        elif e.image and (e.image.proxy_url or e.image.url):
            url = e.image.proxy_url or e.image.url
        if url and url not in seen:
            seen.add(url)
            out.append(Source(label=e.url or url, url=url))
    return out


async def cooldown_check(interaction: discord.Interaction) -> bool:
    """Shared per-user + per-guild limit for every recognition trigger (shared by every process when the
    limiter is PostgreSQL's)."""
    bot: CrystalEyes = interaction.client  # type: ignore[assignment]
    wait = await bot.limiter.acquire(interaction.user.id, interaction.guild_id)
    if wait > 0:
        raise cooldown(*bot.limiter.user, wait)
    return True


Send = Callable[..., Awaitable[discord.Message | None]]


@dataclass(frozen=True)
class Request:
    """One "who is this?": who asked, where the answers go, and how to answer."""

    send: Send  # posts one message of the answer
    owner_id: int  # who may press the reply's buttons
    guild_id: int | None
    upload_limit: int  # the channel's file size limit
    top_n: int | None = None  # names per head; None: the server's setting
    whole_image: bool = False
    private: bool = False

    @classmethod
    def followup(cls, interaction: discord.Interaction, *, top_n: int | None = None, whole_image: bool = False,
                 private: bool = False) -> Request:
        """Answers as follow-ups of a deferred interaction (a slash command, the menu, a button)."""

        async def send(**kwargs):
            return await interaction.followup.send(wait=True, ephemeral=private, **kwargs)

        return cls(send, interaction.user.id, interaction.guild_id, interaction.filesize_limit, top_n, whole_image,
                   private)

    @classmethod
    def reply(cls, message: discord.Message, owner_id: int) -> Request:
        """Answers as replies to a message (a reaction, a watched channel)."""

        async def send(**kwargs):
            return await message.reply(mention_author=False, **kwargs)

        return cls(send, owner_id, message.guild.id, message.guild.filesize_limit)

    @property
    def max_bytes(self) -> int:
        return max(256 * 1024, self.upload_limit - UPLOAD_MARGIN)


class Recognition(commands.Cog):
    def __init__(self, bot: CrystalEyes) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Who is this?", callback=self.who_is_this_menu)
        self.menu.add_check(cooldown_check)
        self.bot.tree.add_command(self.menu)
        self.handled = RecentIds(HANDLED_CAP)  # messages already answered by a trigger
        self.views = LiveViews(MAX_LIVE_VIEWS, MAX_HELD_BYTES)  # live reply buttons

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # -- the shared path -----------------------------------------------------------------------------------------
    async def read(self, source: Source) -> bytes:
        limit = self.bot.settings.max_image_bytes
        if source.attachment is not None:
            check_size(source.attachment.size, limit)  # before downloading it
            return await source.attachment.read()
        assert source.url is not None
        data, _ctype = await self.bot.fetcher.fetch(source.url)
        return data

    def footer(self) -> str:
        info = getattr(self.bot.pipeline, "info", {}) or {}
        name = info.get("name") or info.get("bundle") or "model"
        version = info.get("version")
        return f"Crystal Eyes · {name}" + (f" {version}" if version else "")

    async def answer(self, request: Request, sources: list[Source]) -> None:
        """Recognise each picture and send one reply per picture (embed + annotated file + buttons)."""
        limit = self.bot.config.max_pictures
        if len(sources) > limit:
            await request.send(embed=render.notice(f"This message has {len(sources)} pictures; I look at the "
                                                   f"first {limit}."))
            sources = sources[:limit]
        context = None  # read with the first picture: a refused request reads nothing
        for index, source in enumerate(sources, 1):
            if self.bot.recognizer.full:  # refuse before downloading the picture: a flood costs the loop little
                await self.refuse(request, Busy(), index, len(sources))
                return
            try:
                picture = Picture(data=await self.read(source), label=source.label, spoiler=source.spoiler)
            except discord.HTTPException:
                raise  # Discord's own errors (a deleted attachment...) go to the callers' handlers
            except Exception as exc:  # a bad picture or link: this one fails politely, the others still run
                await self.say(request, exc, f"picture {source.label[:100]!r} of user {request.owner_id}",
                               index, len(sources))
                continue
            context = context or await self.context(request)
            if not await self.recognise(request, context, picture, index, len(sources)):
                return

    async def context(self, request: Request) -> tuple:
        """(the server's settings, its gallery) for a request: read once for all its pictures."""
        gs = self.bot.storage.get(request.guild_id) if request.guild_id is not None else self.bot.storage.defaults
        gallery = await asyncio.get_running_loop().run_in_executor(None, self.bot.galleries.get, request.guild_id)
        return gs, gallery

    async def recognise(self, request: Request, context: tuple, picture: Picture, index: int = 1,
                        total: int = 1) -> bool:
        """One picture: recognise it and send its reply. False when the bot is busy (the rest of the request is
        refused with it)."""
        gs, gallery = context
        try:
            rec = await self.bot.recognizer.recognize(picture.data, whole_image=request.whole_image, gallery=gallery,
                                                      threshold=gs.threshold, max_bytes=request.max_bytes)
        except Busy as exc:
            await self.refuse(request, exc, index, total)
            return False
        except Exception as exc:  # a bad picture, or a bug: this picture fails politely, the others still run
            await self.say(request, exc, f"picture {picture.label[:100]!r} of user {request.owner_id}", index, total)
            return True
        top_n = max(1, min(10, request.top_n or gs.top_k))
        filename = render.filename_for(index, rec.fmt, picture.spoiler)
        embed = render.result_embed(
            rec.result, picture=picture, index=index, total=total, top_n=top_n, filename=filename,
            whole_image=request.whole_image, footer=self.footer(),
        )

        async def retry(interaction: discord.Interaction) -> None:
            await self.retry_whole(interaction, picture, top_n=top_n, private=request.private)

        # Only a "no head found" reply keeps the picture (for its retry button); the others keep just the result.
        can_retry = not request.whole_image and not rec.result.heads
        view = render.ResultView(
            owner_id=request.owner_id, result=rec.result, spoiler=picture.spoiler, retry=retry if can_retry else None
        )
        file = render.annotated_file(rec.annotated, filename, picture.spoiler)
        message = await request.send(embed=embed, file=file, view=view)
        view.message = message if isinstance(message, discord.Message) else None
        self.views.keep(view, len(picture.data) if can_retry else 0)
        return True

    @staticmethod
    async def refuse(request: Request, busy: Busy, index: int, total: int) -> None:
        """The busy answer, for this picture and the ones after it."""
        await request.send(content=log_error(busy, f"{total - index + 1} picture(s) of user {request.owner_id} "
                                                   "refused"))

    @staticmethod
    async def say(request: Request, error: BaseException, where: str, index: int, total: int) -> None:
        text = log_error(error, where)
        await request.send(embed=render.notice(f"Picture {index}: {text}" if total > 1 else text))

    async def retry_whole(self, interaction: discord.Interaction, picture: Picture, *, top_n: int,
                          private: bool) -> None:
        wait = await self.bot.limiter.acquire(interaction.user.id, interaction.guild_id)
        if wait > 0:
            await interaction.response.send_message(explain(cooldown(*self.bot.limiter.user, wait)), ephemeral=True)
            return
        await interaction.response.defer(thinking=True, ephemeral=private)
        request = Request.followup(interaction, top_n=top_n, whole_image=True, private=private)
        await self.recognise(request, await self.context(request), picture)

    # -- /whois --------------------------------------------------------------------------------------------------
    @app_commands.command(name="whois", description="Name the anime characters in a picture")
    @app_commands.describe(
        image="The picture (fan art, screenshot, sketch)",
        url="Or a https:// link to a picture",
        top="How many names to show per head (1-10; default: the server's setting)",
        private="Only you see the answer",
        whole="Skip head detection and name the whole picture as one head",
    )
    @app_commands.check(cooldown_check)
    async def whois(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        url: str | None = None,
        top: app_commands.Range[int, 1, 10] | None = None,
        private: bool = False,
        whole: bool = False,
    ) -> None:
        if image is None and not url:
            await interaction.response.send_message(explain(NoPicture()), ephemeral=True)
            return
        sources = []
        if image is not None:
            if not is_image_attachment(image):
                await interaction.response.send_message(explain(NotAPicture(image.filename)), ephemeral=True)
                return
            sources.append(Source(label=image.filename, attachment=image, spoiler=image.is_spoiler()))
        if url:
            try:
                self.bot.fetcher.check_url(url.strip())
            except FetchError as exc:
                await interaction.response.send_message(
                    log_error(exc, f"/whois url by user {interaction.user.id}"), ephemeral=True)
                return
            sources.append(Source(label=url.strip(), url=url.strip()))
        await interaction.response.defer(thinking=True, ephemeral=private)
        await self.answer(Request.followup(interaction, top_n=top, whole_image=whole, private=private), sources)

    # -- the context menu ----------------------------------------------------------------------------------------
    async def who_is_this_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        sources = message_sources(message)
        if not sources:
            await interaction.response.send_message(explain(NoPicturesInMessage()), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        await self.answer(Request.followup(interaction), sources)

    # -- reactions and watched channels (need the message-content intent) ----------------------------------------
    def _can_reply(self, channel) -> bool:
        guild = getattr(channel, "guild", None)
        if guild is None or guild.me is None:
            return False
        perms = channel.permissions_for(guild.me)
        send = perms.send_messages_in_threads if isinstance(channel, discord.Thread) else perms.send_messages
        ok = send and perms.attach_files and perms.embed_links and perms.read_message_history
        if not ok:
            log.info("no permission to reply in channel %s of guild %s", channel.id, guild.id)
        return ok

    async def reply_to_message(self, message: discord.Message, owner_id: int) -> None:
        sources = message_sources(message)
        if not sources or not self._can_reply(message.channel):
            return
        if not self.handled.first_time(message.id):
            return
        wait = await self.bot.limiter.acquire(owner_id, message.guild.id)
        if wait > 0:
            log.info("cooldown: ignored a trigger by user %s (%.0f s left)", owner_id, wait)
            self.handled.forget(message.id)
            return
        try:
            await self.answer(Request.reply(message, owner_id), sources)
        except discord.HTTPException as exc:
            log.warning("could not reply to message %s: %s %s", message.id, exc.status, exc.text)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        # Without the message-content intent Discord blanks other people's attachments (gateway and REST alike):
        # /settings tells the server so, and the trigger stays off rather than answering "no pictures".
        if not self.bot.intents.message_content:
            return
        if payload.guild_id is None or payload.member is None or payload.member.bot:
            return
        gs = self.bot.storage.get(payload.guild_id)
        if not gs.reactions or str(payload.emoji) != gs.emoji:
            return
        if payload.message_author_id is not None and payload.message_author_id == getattr(self.bot.user, "id", None):
            return
        channel = self.bot.get_channel(payload.channel_id)
        if channel is None or not hasattr(channel, "fetch_message"):
            return
        try:
            message = await channel.fetch_message(payload.message_id)
        except discord.HTTPException as exc:
            log.info("reaction trigger: could not fetch message %s: %s", payload.message_id, exc.status)
            return
        if message.author.bot:
            return
        await self.reply_to_message(message, owner_id=payload.user_id)

    def _watched(self, message: discord.Message) -> bool:
        if not self.bot.intents.message_content or message.author.bot or message.guild is None:
            return False
        watch = self.bot.storage.get(message.guild.id).watch_channels
        return message.channel.id in watch or getattr(message.channel, "parent_id", None) in watch

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if self._watched(message):
            await self.reply_to_message(message, owner_id=message.author.id)

    @commands.Cog.listener()
    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        # A posted link gets its preview (an image embed) a moment later, as an edit.
        if self._watched(after) and not message_sources(before) and message_sources(after):
            await self.reply_to_message(after, owner_id=after.author.id)


async def setup(bot: CrystalEyes) -> None:
    await bot.add_cog(Recognition(bot))
