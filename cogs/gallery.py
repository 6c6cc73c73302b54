"""/teach, /forget (Manage Server), /characters, /about."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from inference.decode import check_size
from inference.errors import GalleryError, ImageError, teach_lines
from inference.gallery import to_tag
from inference.result import Character, display_name
from inference.teaching import TeachReport
from service.errors import (
    NameWithoutLetters,
    NotAPicture,
    NotTaught,
    NotYourPages,
    TeachNeedsAHead,
    explain,
    log_error,
)
from service.recognizer import Busy
from service.storage import StorageError

from .recognition import is_image_attachment

if TYPE_CHECKING:
    from bot import CrystalEyes

log = logging.getLogger(__name__)

PAGE_SIZE = 25


def _fold_like(text: str) -> str:
    return " ".join(text.casefold().split())


def _line(c: Character) -> str:
    name = discord.utils.escape_markdown(c.display)
    name = f"[{name}]({c.url})" if c.url else name
    return f"{name} — *{discord.utils.escape_markdown(c.series)}*" if c.series else name


class CharacterPages(discord.ui.View):
    """Prev/next over a list of names (the invoker only)."""

    def __init__(self, *, owner_id: int, title: str, server: list[str], model: list[Character], works: int = 0,
                 total: int | None = None, timeout: float = 300):
        super().__init__(timeout=timeout)
        self.owner_id = owner_id
        self.title = title
        self.lines = [f"\N{BUSTS IN SILHOUETTE} {n}" for n in server] + [_line(c) for c in model]
        self.n_server = len(server)
        self.n_model = len(model)
        self.total = len(model) if total is None else total
        self.works = works
        self.page = 0
        self.pages = max(1, -(-len(self.lines) // PAGE_SIZE))
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        self.prev.disabled = self.page <= 0
        self.next.disabled = self.page >= self.pages - 1

    def embed(self) -> discord.Embed:
        chunk = self.lines[self.page * PAGE_SIZE : (self.page + 1) * PAGE_SIZE]
        embed = discord.Embed(
            title=self.title, colour=discord.Colour(0x7AC8E8), description="\n".join(chunk) or "Nothing matches."
        )
        embed.set_footer(
            text=f"Page {self.page + 1}/{self.pages} · {self.n_server} taught on this server "
            f"(\N{BUSTS IN SILHOUETTE}) · {self.n_model} of the {self.total} characters the model knows"
            + (f" ({self.works} works)" if self.works else "")
        )
        return embed

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(explain(NotYourPages()), ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def prev(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.page = max(0, self.page - 1)
        self._sync_buttons()
        await interaction.response.edit_message(embed=self.embed(), view=self)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.page = min(self.pages - 1, self.page + 1)
        self._sync_buttons()
        await interaction.response.edit_message(embed=self.embed(), view=self)


class GalleryCog(commands.Cog, name="Gallery"):
    def __init__(self, bot: CrystalEyes) -> None:
        self.bot = bot

    def _enroll(self, guild_id: int, name: str, data: bytes, whole: bool) -> tuple[int, TeachReport | None]:
        """Runs in the recognizer's executor: embed the picture, add it to the gallery file, then tell how well the
        character is now recognised (inference/teaching.py)."""
        shot = self.bot.pipeline.enroll_shot(data, whole_image=whole)
        count = self.bot.galleries.enroll(guild_id, name, shot.vector)
        gallery = self.bot.galleries.get(guild_id)
        report = self.bot.pipeline.assess_taught(gallery, to_tag(name), [shot]) if gallery is not None else None
        return count, report

    @app_commands.command(name="teach", description="Teach this server a character from a picture of them")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        character="The character's name, e.g. 'Aqua (Konosuba)' or 'aqua_(konosuba)'",
        image="A picture where this character's head is the largest one",
        whole="Use the whole picture instead of the largest head (for a picture that is already a head crop)",
    )
    async def teach(
        self, interaction: discord.Interaction, character: app_commands.Range[str, 1, 100], image: discord.Attachment,
        whole: bool = False,
    ) -> None:
        assert interaction.guild_id is not None
        name = to_tag(character)
        where = f"/teach in guild {interaction.guild_id}"
        if not name:
            await interaction.response.send_message(explain(NameWithoutLetters()), ephemeral=True)
            return
        if not is_image_attachment(image):
            await interaction.response.send_message(explain(NotAPicture(image.filename)), ephemeral=True)
            return
        try:
            check_size(image.size, self.bot.settings.max_image_bytes)  # before downloading it
        except ImageError as exc:
            await interaction.response.send_message(log_error(exc, where), ephemeral=True)
            return
        await interaction.response.defer(thinking=True, ephemeral=True)
        data = await image.read()
        try:
            count, report = await self.bot.recognizer.run(self._enroll, interaction.guild_id, character, data, whole)
        except (Busy, ImageError, GalleryError, StorageError) as exc:
            error = TeachNeedsAHead(exc) if isinstance(exc, ImageError) and not whole else exc
            await interaction.followup.send(log_error(error, where), ephemeral=True)
            return
        log.info("guild %s: user %s taught %r", interaction.guild_id, interaction.user.id, name)
        examples = f" ({count} pictures of them now)" if count > 1 else ""
        shown = discord.utils.escape_markdown(self.bot.galleries.display(interaction.guild_id, name))
        told = ""
        if report is not None:
            known = discord.utils.escape_markdown(report.looks_like.title) if report.looks_like else None
            told = "\n" + "\n".join(teach_lines(report, f"**{shown}**", f"**{known}**" if known else None))
        await interaction.followup.send(
            f"Learned **{shown}** (tag `{name}`){examples}. Every recognition on this server now considers them."
            + told,
            ephemeral=True,
        )

    @app_commands.command(name="forget", description="Remove a character this server taught")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(character="A character taught with /teach")
    async def forget(self, interaction: discord.Interaction, character: app_commands.Range[str, 1, 100]) -> None:
        assert interaction.guild_id is not None
        name = to_tag(character)
        await interaction.response.defer(thinking=True, ephemeral=True)
        try:
            removed = await self.bot.recognizer.run(self.bot.galleries.forget, interaction.guild_id, name)
        except (Busy, GalleryError, StorageError) as exc:
            await interaction.followup.send(log_error(exc, f"/forget in guild {interaction.guild_id}"), ephemeral=True)
            return
        if not removed:
            await interaction.followup.send(explain(NotTaught(display_name(name))), ephemeral=True)
            return
        log.info("guild %s: user %s forgot %r", interaction.guild_id, interaction.user.id, name)
        await interaction.followup.send(f"Forgot **{display_name(name)}**.", ephemeral=True)

    @forget.autocomplete("character")
    async def forget_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice]:
        names = self.bot.galleries.names(interaction.guild_id)
        needle = to_tag(current)
        gid = interaction.guild_id
        return [app_commands.Choice(name=self.bot.galleries.display(gid, n)[:100], value=n)
                for n in names if needle in n][:25]

    @app_commands.command(name="characters", description="Search the characters I know, with their works")
    @app_commands.describe(search="A name, part of one, or a work (e.g. 'Rem', 'misaka', 'Re:Zero')")
    async def characters(self, interaction: discord.Interaction, search: str | None = None) -> None:
        index = self.bot.pipeline.characters
        taught = self.bot.galleries.names(interaction.guild_id)
        shown = {n: self.bot.galleries.display(interaction.guild_id, n) for n in taught}
        server = taught
        if search and search in index:  # a pick from the autocomplete list: that one character
            model = [index.get(search)]
            server = [n for n in server if n == search]
        else:
            model = index.search(search or "")
            if search:
                needle = to_tag(search)
                server = [n for n in server if needle in n or _fold_like(search) in shown[n].casefold()]
        server = [shown[n] for n in server]
        title = f"Characters I know matching “{search[:50]}”" if search else "Characters I know"
        view = CharacterPages(owner_id=interaction.user.id, title=title, server=server, model=model,
                              works=index.series_count, total=len(index))
        await interaction.response.send_message(embed=view.embed(), view=view, ephemeral=True)

    @characters.autocomplete("search")
    async def characters_autocomplete(self, interaction: discord.Interaction,
                                      current: str) -> list[app_commands.Choice]:
        if not current.strip():
            return []
        return [app_commands.Choice(name=c.title[:100], value=c.tag[:100])
                for c in self.bot.pipeline.characters.search(current, limit=25)]

    @app_commands.command(name="about", description="Model versions and what I know")
    async def about(self, interaction: discord.Interaction) -> None:
        info = dict(getattr(self.bot.pipeline, "info", {}) or {})
        embed = discord.Embed(title="Crystal Eyes", colour=discord.Colour(0x7AC8E8))
        embed.description = "Names the anime characters in a picture. `/whois`, or right-click a message -> Apps -> Who is this?"
        bundle = " ".join(str(info[k]) for k in ("name", "version") if info.get(k)) or "model bundle"
        embed.add_field(name="Model bundle", value=bundle, inline=False)
        models = info.get("models") or info.get("files") or {}
        if isinstance(models, dict) and models:
            lines = []
            for key, value in list(models.items())[:6]:
                sha = value.get("sha256", "") if isinstance(value, dict) else ""
                fname = value.get("file", key) if isinstance(value, dict) else value
                lines.append(f"`{key}`: {fname}" + (f" (`{sha[:12]}`)" if sha else ""))
            embed.add_field(name="Models", value="\n".join(lines)[:1024], inline=False)
        embed.add_field(name="Characters (model)", value=str(len(self.bot.pipeline.characters)), inline=True)
        taught = self.bot.galleries.names(interaction.guild_id)
        embed.add_field(name="Taught on this server", value=str(len(taught)), inline=True)
        embed.add_field(name="Servers", value=str(len(self.bot.guilds)), inline=True)
        rec = self.bot.recognizer
        embed.add_field(name="Load", value=f"{rec.pending}/{rec.capacity} ({rec.workers} worker(s))", inline=True)
        embed.add_field(
            name="Message Content intent", value="on" if self.bot.intents.message_content else "off", inline=True
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: CrystalEyes) -> None:
    await bot.add_cog(GalleryCog(bot))
