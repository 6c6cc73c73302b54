"""The four ways to ask "who is this?": /whois, the message context menu, a reaction, a watched channel.

Thin adapter: collect the pictures of the interaction or message, hand them to the recognizer, render the
reply with `service.render`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from inference.errors import ImageError
from service import render
from service.errors import log_error
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
        uses, per = bot.limiter.user
        raise app_commands.CommandOnCooldown(app_commands.Cooldown(max(uses, 1), per or 1.0), wait)
    return True


Send = Callable[..., Awaitable[discord.Message | None]]


class Recognition(commands.Cog):
    def __init__(self, bot: CrystalEyes) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Who is this?", callback=self.who_is_this_menu)
        self.menu.add_check(cooldown_check)
        self.bot.tree.add_command(self.menu)
        self._handled: OrderedDict[int, None] = OrderedDict()  # messages already answered by a trigger
        self._views: OrderedDict[int, tuple[render.ResultView, int]] = OrderedDict()  # live reply buttons
        self.max_live_views, self.max_held_bytes, self.handled_cap = MAX_LIVE_VIEWS, MAX_HELD_BYTES, HANDLED_CAP

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # -- the shared path -----------------------------------------------------------------------------------------
    async def read(self, source: Source) -> bytes:
        limit = self.bot.settings.max_image_bytes
        if source.attachment is not None:
            if source.attachment.size > limit:
                raise ImageError(f"the picture is too big ({source.attachment.size // 1_000_000} MB; the limit is "
                                 f"{limit // 1_000_000} MB)")
            return await source.attachment.read()
        assert source.url is not None
        data, _ctype = await self.bot.fetcher.fetch(source.url)
        return data

    def footer(self) -> str:
        info = getattr(self.bot.pipeline, "info", {}) or {}
        name = info.get("name") or info.get("bundle") or "model"
        version = info.get("version")
        return f"Crystal Eyes · {name}" + (f" {version}" if version else "")

    async def answer(
        self,
        *,
        sources: list[Source],
        send: Send,
        owner_id: int,
        guild_id: int | None,
        top_n: int | None,
        whole_image: bool,
        upload_limit: int,
        private: bool = False,
    ) -> None:
        """Recognise each picture and send one reply per picture (embed + annotated file + buttons)."""
        gs = self.bot.storage.get(guild_id) if guild_id is not None else self.bot.storage.defaults
        top_n = max(1, min(10, top_n or gs.top_k))
        max_bytes = max(256 * 1024, upload_limit - UPLOAD_MARGIN)
        loop = asyncio.get_running_loop()
        gallery = await loop.run_in_executor(None, self.bot.galleries.get, guild_id)
        limit = self.bot.config.max_pictures
        if len(sources) > limit:
            await send(embed=render.notice(f"This message has {len(sources)} pictures; I look at the first {limit}."))
            sources = sources[:limit]
        total = len(sources)
        for index, source in enumerate(sources, 1):
            try:
                data = await self.read(source)
                picture = Picture(data=data, label=source.label, spoiler=source.spoiler)
                rec = await self.bot.recognizer.recognize(
                    data, whole_image=whole_image, gallery=gallery, threshold=gs.threshold, max_bytes=max_bytes
                )
            except Busy as exc:
                await send(content=log_error(exc, f"{total - index + 1} picture(s) of user {owner_id} refused"))
                return
            except discord.HTTPException:
                raise  # Discord's own errors (a deleted attachment...) go to the callers' handlers
            except Exception as exc:  # a bad picture, or a bug: this picture fails politely, the others still run
                text = log_error(exc, f"picture {source.label[:100]!r} of user {owner_id}")
                await send(embed=render.notice(f"Picture {index}: {text}" if total > 1 else text))
                continue
            await self.send_result(
                send=send, rec=rec, picture=picture, index=index, total=total, top_n=top_n, owner_id=owner_id,
                guild_id=guild_id, whole_image=whole_image, private=private,
            )

    async def send_result(
        self, *, send: Send, rec, picture: Picture, index: int, total: int, top_n: int, owner_id: int,
        guild_id: int | None, whole_image: bool, private: bool,
    ) -> None:
        filename = render.filename_for(index, rec.fmt, picture.spoiler)
        embed = render.result_embed(
            rec.result, picture=picture, index=index, total=total, top_n=top_n, filename=filename,
            whole_image=whole_image, footer=self.footer(),
        )

        async def retry(interaction: discord.Interaction) -> None:
            await self.retry_whole(interaction, picture, top_n=top_n, guild_id=guild_id, private=private)

        # Only a "no head found" reply keeps the picture (for its retry button); the others keep just the result.
        can_retry = not whole_image and not rec.result.heads
        view = render.ResultView(
            owner_id=owner_id, result=rec.result, spoiler=picture.spoiler, retry=retry if can_retry else None
        )
        file = render.annotated_file(rec.annotated, filename, picture.spoiler)
        message = await send(embed=embed, file=file, view=view)
        view.message = message if isinstance(message, discord.Message) else None
        self._keep_view(view, len(picture.data) if can_retry else 0)

    def _keep_view(self, view: render.ResultView, held: int) -> None:
        """Track live reply views; past MAX_LIVE_VIEWS or MAX_HELD_BYTES the oldest expire early."""
        for key in [k for k, (v, _) in self._views.items() if v.is_finished()]:
            del self._views[key]
        self._views[id(view)] = (view, held)
        while len(self._views) > 1 and (
            len(self._views) > self.max_live_views or sum(h for _, h in self._views.values()) > self.max_held_bytes
        ):
            _, (old, _) = self._views.popitem(last=False)
            old.expire()

    async def retry_whole(self, interaction: discord.Interaction, picture: Picture, *, top_n: int,
                          guild_id: int | None, private: bool) -> None:
        wait = await self.bot.limiter.acquire(interaction.user.id, guild_id)
        if wait > 0:
            await interaction.response.send_message(f"Slow down a little: try again in {wait:.0f} s.", ephemeral=True)
            return
        await interaction.response.defer(thinking=True, ephemeral=private)

        async def send(**kwargs):
            return await interaction.followup.send(wait=True, ephemeral=private, **kwargs)

        gs = self.bot.storage.get(guild_id) if guild_id is not None else self.bot.storage.defaults
        loop = asyncio.get_running_loop()
        gallery = await loop.run_in_executor(None, self.bot.galleries.get, guild_id)
        max_bytes = max(256 * 1024, interaction.filesize_limit - UPLOAD_MARGIN)
        try:
            rec = await self.bot.recognizer.recognize(
                picture.data, whole_image=True, gallery=gallery, threshold=gs.threshold, max_bytes=max_bytes
            )
        except Busy as exc:
            await send(content=log_error(exc, f"whole-picture rerun of user {interaction.user.id} refused"))
            return
        except ImageError as exc:
            await send(embed=render.notice(log_error(exc, f"whole-picture rerun of user {interaction.user.id}")))
            return
        await self.send_result(
            send=send, rec=rec, picture=picture, index=1, total=1, top_n=top_n, owner_id=interaction.user.id,
            guild_id=guild_id, whole_image=True, private=private,
        )

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
            await interaction.response.send_message(
                "Attach a picture with `image:` or give a link with `url:`.", ephemeral=True
            )
            return
        sources = []
        if image is not None:
            if not is_image_attachment(image):
                await interaction.response.send_message(
                    f"`{image.filename}` is not a picture (PNG, JPEG, WebP, GIF or BMP).", ephemeral=True
                )
                return
            sources.append(Source(label=image.filename, attachment=image, spoiler=image.is_spoiler()))
        if url:
            try:
                self.bot.fetcher.check_url(url.strip())
            except FetchError as exc:
                await interaction.response.send_message(str(exc), ephemeral=True)
                return
            sources.append(Source(label=url.strip(), url=url.strip()))
        await interaction.response.defer(thinking=True, ephemeral=private)

        async def send(**kwargs):
            return await interaction.followup.send(wait=True, ephemeral=private, **kwargs)

        await self.answer(
            sources=sources, send=send, owner_id=interaction.user.id, guild_id=interaction.guild_id, top_n=top,
            whole_image=whole, upload_limit=interaction.filesize_limit, private=private,
        )

    # -- the context menu ----------------------------------------------------------------------------------------
    async def who_is_this_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        sources = message_sources(message)
        if not sources:
            await interaction.response.send_message(
                "That message has no pictures (attachments or image links) for me to look at.", ephemeral=True
            )
            return
        await interaction.response.defer(thinking=True)

        async def send(**kwargs):
            return await interaction.followup.send(wait=True, **kwargs)

        await self.answer(
            sources=sources, send=send, owner_id=interaction.user.id, guild_id=interaction.guild_id, top_n=None,
            whole_image=False, upload_limit=interaction.filesize_limit,
        )

    # -- reactions and watched channels (need the message-content intent) ----------------------------------------
    def _first_time(self, message_id: int) -> bool:
        if message_id in self._handled:
            return False
        self._handled[message_id] = None
        while len(self._handled) > self.handled_cap:
            self._handled.popitem(last=False)
        return True

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
        if not self._first_time(message.id):
            return
        wait = await self.bot.limiter.acquire(owner_id, message.guild.id)
        if wait > 0:
            log.info("cooldown: ignored a trigger by user %s (%.0f s left)", owner_id, wait)
            self._handled.pop(message.id, None)
            return

        async def send(**kwargs):
            return await message.reply(mention_author=False, **kwargs)

        try:
            await self.answer(
                sources=sources, send=send, owner_id=owner_id, guild_id=message.guild.id, top_n=None,
                whole_image=False, upload_limit=message.guild.filesize_limit,
            )
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
