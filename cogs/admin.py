"""/settings: per-server options (Manage Server only), stored in SQLite by `service.storage`."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from service.errors import NotAnEmoji, explain, log_error
from service.storage import GuildSettings, StorageError

if TYPE_CHECKING:
    from bot import CrystalEyes

log = logging.getLogger(__name__)

_CUSTOM_EMOJI = re.compile(r"^<a?:[A-Za-z0-9_]{2,32}:\d{15,21}>$")


def parse_emoji(text: str) -> str | None:
    """A unicode emoji or a custom emoji mention, in the form a reaction event reports (`str(payload.emoji)`)."""
    text = text.strip()
    if _CUSTOM_EMOJI.match(text):
        return str(discord.PartialEmoji.from_str(text))
    if 0 < len(text) <= 16 and not any(c.isascii() and (c.isalnum() or c.isspace() or c in "<>:@#") for c in text):
        return text
    return None


def settings_embed(bot: CrystalEyes, guild: discord.Guild, gs: GuildSettings) -> discord.Embed:
    embed = discord.Embed(title=f"Crystal Eyes settings for {guild.name}", colour=discord.Colour(0x7AC8E8))
    own = getattr(getattr(bot, "pipeline", None), "decision", None)
    default = f"the model's ({own.threshold:.2f})" if own is not None else "the model's (0.30)"
    embed.add_field(name="Not-sure threshold", value=default if gs.threshold is None else f"{gs.threshold:.2f}",
                    inline=True)
    embed.add_field(name="Names per head", value=str(gs.top_k), inline=True)
    embed.add_field(
        name="Reaction trigger", value=f"{'on' if gs.reactions else 'off'} ({gs.emoji})", inline=True
    )
    watched = [f"<#{c}>" for c in sorted(gs.watch_channels)]
    embed.add_field(name="Watch channels", value=", ".join(watched) or "none", inline=False)
    notes = []
    if not bot.intents.message_content:
        notes.append(
            "\N{WARNING SIGN} This bot runs **without the Message Content intent**, so the reaction trigger and "
            "watch channels cannot see pictures. The host must enable *Message Content Intent* in the Discord "
            "developer portal and set `MESSAGE_CONTENT_INTENT=true`. `/whois` and the **Who is this?** menu work "
            "without it."
        )
    for channel_id in sorted(gs.watch_channels):
        channel = guild.get_channel(channel_id)
        if channel is None:
            notes.append(f"Watch channel {channel_id} no longer exists; remove it with `unwatch`.")
            continue
        perms = channel.permissions_for(guild.me)
        if not (perms.send_messages and perms.attach_files and perms.embed_links):
            notes.append(f"I can't post pictures in {channel.mention} (need Send Messages, Attach Files, Embed Links).")
    if not bot.storage.available:
        notes.append("\N{WARNING SIGN} The settings database is unavailable: defaults are in use (see the log).")
    if notes:
        embed.description = "\n".join(notes)
    return embed


class Admin(commands.Cog):
    def __init__(self, bot: CrystalEyes) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Show or change Crystal Eyes settings for this server")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        threshold="How sure (0-1) I must be that I know a character before naming it (reset: the model's own)",
        emoji="Reaction that triggers recognition (a unicode or server emoji)",
        reactions="Turn the reaction trigger on or off",
        top="How many names to show per head by default (1-10)",
        watch="Recognise every picture posted in this channel",
        unwatch="Stop watching this channel",
        reset="Forget every setting of this server (back to the defaults)",
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        threshold: app_commands.Range[float, 0.0, 1.0] | None = None,
        emoji: str | None = None,
        reactions: bool | None = None,
        top: app_commands.Range[int, 1, 10] | None = None,
        watch: discord.TextChannel | None = None,
        unwatch: discord.TextChannel | None = None,
        reset: bool = False,
    ) -> None:
        assert interaction.guild is not None
        guild_id = interaction.guild.id
        storage = self.bot.storage
        changes: dict = {}
        if threshold is not None:
            changes["threshold"] = float(threshold)
        if top is not None:
            changes["top_k"] = int(top)
        if reactions is not None:
            changes["reactions"] = bool(reactions)
        if emoji is not None:
            parsed = parse_emoji(emoji)
            if parsed is None:
                await interaction.response.send_message(explain(NotAnEmoji(emoji)), ephemeral=True)
                return
            changes["emoji"] = parsed
        def save() -> GuildSettings:  # SQLite may wait on a lock: off the event loop
            if reset:
                storage.reset(guild_id)
            if changes:
                storage.update(guild_id, **changes)
            if watch is not None:
                storage.set_watch(guild_id, watch.id, True)
            if unwatch is not None:
                storage.set_watch(guild_id, unwatch.id, False)
            return storage.get(guild_id)

        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            gs = await asyncio.get_running_loop().run_in_executor(None, save)
        except StorageError as exc:
            await interaction.followup.send(log_error(exc, f"/settings in guild {guild_id}"), ephemeral=True)
            return
        changed = reset or bool(changes) or watch is not None or unwatch is not None
        if changed:
            log.info("guild %s settings changed by user %s: %s", guild_id, interaction.user.id,
                     sorted(changes) + (["watch"] if watch else []) + (["unwatch"] if unwatch else []) +
                     (["reset"] if reset else []))
        await interaction.followup.send(
            content="Saved." if changed else None, embed=settings_embed(self.bot, interaction.guild, gs),
            ephemeral=True,
        )


async def setup(bot: CrystalEyes) -> None:
    await bot.add_cog(Admin(bot))
