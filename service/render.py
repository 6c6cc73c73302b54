"""Turn a recognition into what Discord shows: embeds, the annotated file and the buttons."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from inference.result import UNKNOWN_TEXT, Candidate, Head

from .errors import NotYourButtons, explain, log_error

log = logging.getLogger(__name__)

COLOUR = discord.Colour(0x7AC8E8)
WARN = discord.Colour.orange()
MAX_FIELDS = 25


@dataclass(frozen=True)
class Picture:
    """One picture to recognise, as a reply will label it."""

    data: bytes
    label: str  # file name or link, shown in the embed
    spoiler: bool = False


def _name(cand: Candidate) -> str:
    """**Rem** — *Re:Zero*, the name linked to its page when the bundle knows one."""
    c = cand.character
    name = discord.utils.escape_markdown(c.display)
    name = f"[**{name}**]({c.url})" if c.url else f"**{name}**"
    return f"{name} — *{discord.utils.escape_markdown(c.series)}*" if c.series else name


def candidate_lines(head: Head, top_n: int, *, spoiler: bool = False) -> str:
    lines = []
    for i, cand in enumerate(head.candidates[:top_n], 1):
        tag = " (server gallery)" if cand.source == "gallery" else ""
        text = f"{_name(cand)}{tag}"
        if spoiler:
            text = f"||{text}||"
        lines.append(f"{i}. {text} · {cand.probability * 100:.1f}%")
    return "\n".join(lines) or "no candidates"


def head_title(number: int, head: Head) -> str:
    return f"Head #{number}" + ("" if head.sure else f" — {UNKNOWN_TEXT}")


def head_value(head: Head, top_n: int, *, spoiler: bool = False) -> str:
    """The candidate lines; for a head the bot does not name, first what it says instead."""
    lines = candidate_lines(head, top_n, spoiler=spoiler)
    if head.sure or head.top is None:
        return lines
    closest = _name(head.top)
    closest = f"||{closest}||" if spoiler else closest
    return (f"{UNKNOWN_TEXT} — closest: {closest} ({head.top.probability * 100:.1f}%). "
            f"A server manager can `/teach` it.\n{lines}")


def filename_for(index: int, fmt: str, spoiler: bool) -> str:
    name = f"crystal-eyes-{index}.{fmt}"
    return f"SPOILER_{name}" if spoiler else name


def result_embed(
    result,
    *,
    picture: Picture,
    index: int,
    total: int,
    top_n: int,
    filename: str | None,
    whole_image: bool = False,
    footer: str | None = None,
) -> discord.Embed:
    heads = result.heads
    title = f"Picture {index} of {total}" if total > 1 else "Who is this?"
    label = picture.label.replace("`", "'").replace("\n", " ")
    label = label if len(label) <= 200 else label[:197] + "..."
    if not heads:
        embed = discord.Embed(
            title=title,
            colour=WARN,
            description=(
                f"`{label}`\n"
                "**No head found** in this picture. Heads that are very small, cut off or drawn in an unusual "
                "style can be missed. Press **Try the whole picture** to name the picture as one head, or run "
                "`/whois` again with `whole:True`."
            ),
        )
    else:
        unsure = sum(1 for h in heads if not h.sure)
        desc = f"`{label}`\n{len(heads)} head{'s' if len(heads) != 1 else ''} found"
        if whole_image:
            desc = f"`{label}`\nThe whole picture, named as one head"
        if unsure:
            desc += f" · {unsure} not recognised"
        embed = discord.Embed(title=title, colour=COLOUR, description=desc)
        for number, head in enumerate(heads[:MAX_FIELDS], 1):
            embed.add_field(
                name=head_title(number, head), value=head_value(head, top_n, spoiler=picture.spoiler)[:1024],
                inline=False
            )
        if len(heads) > MAX_FIELDS:
            embed.description += f"\nShowing the first {MAX_FIELDS} heads."
    if filename and not picture.spoiler:
        # A spoilered picture is attached on its own (an embed image cannot be hidden behind a spoiler).
        embed.set_image(url=f"attachment://{filename}")
    if footer:
        embed.set_footer(text=footer)
    return embed


def more_embed(result, *, top_n: int = 10, spoiler: bool = False) -> discord.Embed:
    embed = discord.Embed(title="More candidates", colour=COLOUR)
    for number, head in enumerate(result.heads[:MAX_FIELDS], 1):
        embed.add_field(name=head_title(number, head), value=candidate_lines(head, top_n, spoiler=spoiler)[:1024])
    if not result.heads:
        embed.description = "No head found, so there are no candidates."
    return embed


def annotated_file(data: bytes, filename: str, spoiler: bool) -> discord.File:
    return discord.File(io.BytesIO(data), filename=filename, spoiler=spoiler)


def notice(text: str, *, colour: discord.Colour = WARN) -> discord.Embed:
    return discord.Embed(description=text, colour=colour)


Retry = Callable[[discord.Interaction], Awaitable[None]]


class ResultView(discord.ui.View):
    """Buttons under one picture's reply. Only the person who asked can use them."""

    def __init__(self, *, owner_id: int, result, spoiler: bool, retry: Retry | None, timeout: float = 600):
        super().__init__(timeout=timeout)
        self.owner_id = owner_id
        self.result = result
        self.spoiler = spoiler
        self._retry = retry
        self.message: discord.Message | None = None
        if not result.heads:
            self.remove_item(self.more)
        if result.heads or retry is None:
            self.remove_item(self.whole)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(explain(NotYourButtons()), ephemeral=True)
            return False
        return True

    @discord.ui.button(label="More candidates", style=discord.ButtonStyle.secondary, emoji="\N{HEAVY PLUS SIGN}")
    async def more(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_message(embed=more_embed(self.result, spoiler=self.spoiler), ephemeral=True)

    @discord.ui.button(label="Try the whole picture", style=discord.ButtonStyle.primary, emoji="\N{FRAME WITH PICTURE}")
    async def whole(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        assert self._retry is not None
        await self._retry(interaction)
        # one retry per reply: disable the button and let go of the picture
        button.disabled = True
        self._retry = None
        if self.message is not None:
            try:
                await self.message.edit(view=self)
            except discord.HTTPException:
                pass
        self.stop()

    def expire(self) -> None:
        """End early (too many live views): stop listening, drop the picture, remove the buttons."""
        self._retry = None
        self.stop()
        if self.message is not None:
            self._expiry = asyncio.get_running_loop().create_task(self.on_timeout())  # keep a reference

    async def on_timeout(self) -> None:
        if self.message is not None:
            try:
                await self.message.edit(view=None)
            except discord.HTTPException:
                pass

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item) -> None:
        text = log_error(error, f"button {getattr(item, 'label', item)!r} of user {interaction.user.id}")
        send = interaction.followup.send if interaction.response.is_done() else interaction.response.send_message
        try:
            await send(text, ephemeral=True)
        except discord.HTTPException:
            pass
