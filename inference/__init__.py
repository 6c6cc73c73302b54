"""Crystal Eyes recognition core: bytes -> heads -> names. No Discord here.

Read the data path top to bottom: decode -> detect -> crop -> embed -> classify -> annotate,
assembled by `pipeline.Pipeline`.
"""

from .errors import BundleError, CrystalEyesError, GalleryError, ImageError
from .result import Candidate, Head, Result, display_name

__all__ = ["BundleError", "Candidate", "CrystalEyesError", "GalleryError", "Head", "ImageError", "Result",
           "display_name"]
