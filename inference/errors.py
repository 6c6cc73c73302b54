"""Typed errors of the recognition core.

Every error a caller can get from bad input or a bad bundle is one of these, with a message that can
be shown to a user as it is (it never contains secrets or stack traces).
"""

from __future__ import annotations


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


class ImageTooLargeError(ImageError):
    """Over the byte limit, or over the pixel limit (checked from the header, before decoding)."""


class BundleError(CrystalEyesError):
    """A model bundle is missing, incomplete, corrupt (sha256 mismatch) or inconsistent."""


class GalleryError(CrystalEyesError):
    """A gallery file is unreadable or was made with another encoder."""
