"""Owner-only commands. Command sync happens only here, never on start (syncing is rate-limited by Discord)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from discord.ext import commands

from service.errors import OnlyInAServer, Usage, explain, log_error

if TYPE_CHECKING:
    from bot import CrystalEyes

log = logging.getLogger(__name__)

SYNC_USAGE = "@bot sync [global|guild|clear]"


class Owner(commands.Cog):
    def __init__(self, bot: CrystalEyes) -> None:
        self.bot = bot

    async def cog_check(self, ctx: commands.Context) -> bool:
        if not await self.bot.is_owner(ctx.author):
            raise commands.NotOwner()  # its words are the error table's
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
            await ctx.reply(explain(OnlyInAServer(f"@bot sync {scope}")))
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
        """The error table's words and log level (service/errors.py): not the owner, a bad scope, Discord's
        refusal, or a bug (logged with its traceback)."""
        if isinstance(error, commands.UserInputError):  # a scope it does not take, or too many
            error = Usage(SYNC_USAGE)
        text = log_error(error, f"@bot sync by user {ctx.author.id}")
        await ctx.reply(text, mention_author=False)


async def setup(bot: CrystalEyes) -> None:
    await bot.add_cog(Owner(bot))
