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
