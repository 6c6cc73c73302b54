"""Every error a person is told about goes through the error table (service/errors.py over inference/errors.py):
no cog, no reply view and not bot.py writes its own words for one. Read from the source, so that a new side door
fails here before anyone meets it in Discord."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where the bot talks to people: the cogs, the reply's view, the bot itself.
SPEAKERS = sorted((ROOT / "cogs").glob("*.py")) + [ROOT / "service" / "render.py", ROOT / "bot.py"]
TABLES = [(ROOT / "service" / "errors.py", ("TABLE", "STARTUP")), (ROOT / "inference" / "errors.py", ("TABLE",))]
# What is sent to a person: a Discord send, reply, response or edit, and what the bot prints when it cannot start.
SENDERS = {"send", "send_message", "reply", "edit_message", "respond", "print"}
# Words a cog may write itself: what it did, never why it could not; and the frame of `python bot.py`'s line.
NEWS = ("Learned **", "Forgot **", "Saved.", "Synced ")
FRAMES = ("crystal-eyes: {}",)


def _texts(node: ast.expr):
    """The parts of an argument that become the text: both branches of `a if c else b`."""
    if isinstance(node, ast.IfExp):
        yield from _texts(node.body)
        yield from _texts(node.orelse)
    else:
        yield node


def _written_here(node: ast.expr) -> str | None:
    """The words when the text is written at the call (a literal, an f-string, or an exception's own message by
    `str(exc)`), else None (a name, `explain(...)`, `log_error(...)`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str":
        return "str(...)"
    return None


def side_doors(source: str, filename: str = "<source>") -> list[str]:
    """`line: words` of each message written at a send instead of coming from the error table."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name not in SENDERS:
            continue
        args = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "content")]
        for arg in args:
            for text in _texts(arg):
                words = _written_here(text)
                if words is not None and words not in FRAMES and not (name != "print" and words.startswith(NEWS)):
                    out.append((node.lineno, words))
    return [f"{line}: {words}" for line, words in sorted(out)]


def test_the_scan_sees_a_side_door():
    cog = '''
async def teach(self, interaction, image):
    if image.size > self.bot.settings.max_image_bytes:
        await interaction.response.send_message("That picture is too big.", ephemeral=True)
        return
    try:
        self.bot.fetcher.check_url(url)
    except FetchError as exc:
        await interaction.response.send_message(str(exc), ephemeral=True)
    await ctx.reply(f"Discord refused the sync ({status}); try again later.")
    await request.send(content="Saved." if changed else "Nothing to save, sorry.")
    await interaction.followup.send(f"Learned **{name}**.", ephemeral=True)
    await interaction.followup.send(explain(NotAPicture(image.filename)), ephemeral=True)
    print(f"crystal-eyes: cannot reach Discord ({reason})", file=sys.stderr)
'''
    assert side_doors(cog) == ["4: That picture is too big.", "9: str(...)",
                               "10: Discord refused the sync ({}); try again later.",
                               "11: Nothing to save, sorry.", "14: crystal-eyes: cannot reach Discord ({})"]


@pytest.mark.parametrize("path", SPEAKERS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_speaker_writes_its_own_error_words(path):
    assert side_doors(path.read_text(), str(path)) == []


def table_words() -> set[str]:
    """The literal words of every table entry (each run of 20 characters or more, f-strings' too)."""
    out = set()
    for path, names in TABLES:
        for node in ast.parse(path.read_text()).body:
            targets = [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
            if set(targets) & set(names):
                out |= {c.value.strip() for c in ast.walk(node)
                        if isinstance(c, ast.Constant) and isinstance(c.value, str) and len(c.value.strip()) >= 20}
    return out


def test_the_table_words_are_written_once():
    words = table_words()
    assert {"Slow down a little: try again in", "Only the bot's owner can do this.",
            "Attach a picture with `image:` or give a link with `url:`."} <= words
    code = [p for p in [*SPEAKERS, *(ROOT / "service").glob("*.py"), *(ROOT / "inference").rglob("*.py")]
            if p.name != "errors.py"]
    again = sorted(f"{p.relative_to(ROOT)}: {w}" for p in code for w in words if w in p.read_text())
    assert again == []
