"""Typed errors of the recognition core.

Every error a caller can get from bad input or a bad bundle is one of these, with a message that can
be shown to a user as it is (it never contains secrets or stack traces).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass


class CrystalEyesError(Exception):
    """Base class of every error raised on purpose by `inference`."""


class ImageError(CrystalEyesError, ValueError):
    """The input is not a picture we can read. The message says why, in plain words."""


class EmptyImageError(ImageError):
    """Zero bytes."""


class NotAnImageError(ImageError):
    """The bytes are not in any picture format we read (text, HTML, zip...)."""


class CorruptImageError(ImageError):
    """A picture format was recognised, but the file is truncated or damaged."""


class NoHeadError(ImageError):
    """Enrollment needs exactly one clear head and none was found."""


class ImageTooLargeError(ImageError):
    """Over the byte limit, or over the pixel limit (checked from the header, before decoding)."""


class BundleError(CrystalEyesError):
    """A model bundle is missing, incomplete, corrupt (sha256 mismatch) or inconsistent."""


class GalleryError(CrystalEyesError):
    """A gallery file is unreadable or was made with another encoder."""


class Busy(CrystalEyesError):
    """Every worker is busy and the queue is full (inference/runner.py), or the recognition service is."""

    def __init__(self, message: str = "I'm busy with other pictures right now, try again in a moment.") -> None:
        super().__init__(message)


# -- the error table ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Described:
    """How one kind of error reaches a person: the words they are shown (`{error}` is the exception's own
    message), the HTTP status the API answers with, the level of the log line, and the CLI's exit code."""

    text: str | Callable[[BaseException], str]  # or a function of the error, for words that depend on it
    status: int
    level: int = logging.INFO
    exit_code: int = 1

    def message(self, error: BaseException) -> str:
        return self.text(error) if callable(self.text) else self.text.format(error=error)


# Most specific first: the first entry the error is an instance of describes it. The bot adds the errors of its
# own layer (Discord, downloads, storage) in service/errors.py and falls back to this table.
TABLE: tuple[tuple[type[BaseException], Described], ...] = (
    (Busy, Described("{error}", 503)),
    (ImageTooLargeError, Described("I couldn't read that picture: {error}", 413, exit_code=2)),
    (NotAnImageError, Described("I couldn't read that picture: {error}", 415, exit_code=2)),
    (ImageError, Described("I couldn't read that picture: {error}", 400, exit_code=2)),
    (GalleryError, Described("I couldn't use the server's gallery; see the bot's log.", 422, logging.ERROR, 2)),
    (BundleError, Described("The model bundle is unusable: {error}", 500, logging.ERROR, 2)),
)
UNEXPECTED = Described("Something went wrong on my side; it has been logged.", 500, logging.ERROR)


def describe(error: BaseException, table=TABLE) -> Described:
    """The table's entry for `error` (UNEXPECTED when none fits: a bug, logged with its traceback)."""
    for kind, described in table:
        if isinstance(error, kind):
            return described
    return UNEXPECTED


# -- what a teacher is told after /teach or enroll (inference/teaching.py's report, in words) -----------------------
TEACH: dict[str, str] = {
    "recognised": "Left out one at a time, {recognised} of its last {tested} pictures are named {name} ({share:.0%}).",
    "weak": "Teach a few more pictures of {name} (other poses, outfits, artists) to make me surer.",
    "few": "Teach at least {more} more picture(s) of {name} and I can tell you how well I recognise them.",
    "looks_like": "These pictures look like {known}, whom I already know (I name them so for {count} of {shots} "
                  "without this server's characters). If that is who it is, there is no need to teach them: {forget}.",
    "same": "I already know {known} without this server's pictures; yours make them count for more here.",
    "forget_bot": "`/forget {tag}` removes what was taught",
    "forget_cli": "remove {tag} from the gallery file",
}
WEAK_SHARE = 0.8  # below this leave-one-out share, the teacher is asked for more pictures


def teach_lines(report, name: str, known: str | None = None, where: str = "bot") -> list[str]:
    """The words about a TeachReport (inference/teaching.py): `name` is how the taught character is shown, `known`
    how the character it looks like is shown (its title by default); `where`: 'bot' or 'cli' (how to undo)."""
    lines = []
    if report.tested:
        lines.append(TEACH["recognised"].format(recognised=report.recognised, tested=report.tested, name=name,
                                                share=report.share))
        if report.share < WEAK_SHARE:
            lines.append(TEACH["weak"].format(name=name))
    else:
        lines.append(TEACH["few"].format(more=report.more_needed, name=name))
    if report.looks_like is not None:
        shown = known or report.looks_like.title
        if report.looks_like.tag == report.tag:
            lines.append(TEACH["same"].format(known=shown))
        else:
            forget = TEACH["forget_bot" if where == "bot" else "forget_cli"].format(tag=report.tag)
            lines.append(TEACH["looks_like"].format(known=shown, count=report.looks_like_shots,
                                                    shots=report.checked, forget=forget))
    return lines
