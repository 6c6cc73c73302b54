"""Owner-only commands. Command sync happens only here, never on start (syncing is rate-limited by Discord)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot import CrystalEyes

log = logging.getLogger(__name__)


class Owner(commands.Cog):
    def __init__(self, bot: CrystalEyes) -> None:
        self.bot = bot

    async def cog_check(self, ctx: commands.Context) -> bool:
        if not await self.bot.is_owner(ctx.author):
            raise commands.NotOwner("Only the bot's owner can do this.")
        return True

    @commands.command(name="sync")
    async def sync(self, ctx: commands.Context, scope: Literal["global", "guild", "clear"] = "global") -> None:
        """`@bot sync` publishes the slash commands everywhere (takes up to an hour to show);
        `@bot sync guild` copies them to this server at once (for testing); `@bot sync clear` removes those copies."""
        tree = self.bot.tree
        if scope == "global":
            synced = await tree.sync()
            where = "globally"
        elif ctx.guild is None:
            await ctx.reply("`guild` and `clear` only work in a server.")
            return
        elif scope == "guild":
            tree.copy_global_to(guild=ctx.guild)
            synced = await tree.sync(guild=ctx.guild)
            where = "to this server"
        else:
            tree.clear_commands(guild=ctx.guild)
            synced = await tree.sync(guild=ctx.guild)
            where = "to this server (cleared)"
        log.info("owner %s synced %d command(s) %s", ctx.author.id, len(synced), where)
        await ctx.reply(f"Synced {len(synced)} command(s) {where}.", mention_author=False)

    @sync.error
    async def sync_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        original = getattr(error, "original", error)
        if isinstance(error, (commands.NotOwner, commands.CheckFailure)):
            log.info("user %s tried the owner-only sync command", ctx.author.id)
            await ctx.reply("Only the bot's owner can do this.", mention_author=False)
        elif isinstance(error, commands.BadArgument):
            await ctx.reply("Usage: `@bot sync [global|guild|clear]`.", mention_author=False)
        elif isinstance(original, discord.HTTPException):
            log.warning("command sync failed: %s %s", original.status, original.text)
            await ctx.reply(f"Discord refused the sync ({original.status}); try again later.", mention_author=False)
        else:
            log.error("sync failed", exc_info=original)
            await ctx.reply("Sync failed; see the log.", mention_author=False)


async def setup(bot: CrystalEyes) -> None:
    await bot.add_cog(Owner(bot))
