"""The only way the bot runs inference: a bounded thread pool behind a bounded queue.

`workers` jobs run at once and `queue_size` more may wait; one more and `Busy` is raised at once, so a
flood of pictures gets "busy, try again in a moment" instead of piling up in memory. The event loop never
runs inference itself: every job goes through `loop.run_in_executor`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from inference.runner import BoundedRunner, Busy

log = logging.getLogger(__name__)

__all__ = ["MORE_TOP_K", "Busy", "Recognition", "Recognizer"]

MORE_TOP_K = 10  # every recognition asks for this many candidates so "more candidates" needs no second run


@dataclass(frozen=True)
class Recognition:
    result: Any  # inference.result.Result
    annotated: bytes  # the annotated picture, encoded
    fmt: str  # "png" or "jpg"


class Recognizer(BoundedRunner):
    """The pipeline's jobs on the shared bounded runner (`inference.runner`): `run` raises `Busy` when full."""

    def __init__(self, pipeline: Any, *, workers: int = 1, queue_size: int = 8) -> None:
        super().__init__(workers, queue_size)
        self.pipeline = pipeline

    # -- the jobs ------------------------------------------------------------------------------------------------
    def _recognize(self, data, top_k, whole_image, gallery, threshold, max_bytes) -> Recognition:
        result = self.pipeline.recognize(
            data, top_k=top_k, whole_image=whole_image, gallery=gallery, threshold=threshold
        )
        # JPEG q90: ~4 ms to encode a 1 MP picture where PNG takes ~90-320 ms, at a fifth of the size;
        # annotate() lowers the quality, then the size, until it fits max_bytes.
        annotated = self.pipeline.annotate(result, fmt="JPEG", max_bytes=max_bytes)
        fmt = "jpg"
        # Drop the decoded picture: the result is kept by the reply's buttons for minutes, the pixels are not needed.
        return Recognition(result=replace(result, image=None), annotated=annotated, fmt=fmt)

    async def recognize(
        self,
        data: bytes,
        *,
        top_k: int = MORE_TOP_K,
        whole_image: bool = False,
        gallery: Any = None,
        threshold: float | None = None,
        max_bytes: int | None = None,
    ) -> Recognition:
        return await self.run(self._recognize, data, top_k, whole_image, gallery, threshold, max_bytes)

    async def embed_for_enroll(self, data: bytes, *, whole_image: bool = False):
        return await self.run(self.pipeline.embed_for_enroll, data, whole_image=whole_image)
