"""A request's images: their bytes (data: URLs decoded, http(s) URLs fetched), then checked and decoded.

Decoding is the costly step, so it comes last: every image's header is read and the request's pixels
are checked against the per-request budget before any image is decoded, and each is then decoded
straight to the size the model needs (see :mod:`vlserve.media.images`), or taken from the decoded-image
cache when the same bytes were decoded for the same size a moment ago (:mod:`vlserve.media.image_cache`).
Every decode (a cache miss included) takes its pixels from the server-wide decode budget while it runs
(:mod:`vlserve.media.decode_budget`); a cache hit decodes nothing and takes none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from vlserve.errors import ClientError
from vlserve.media.address_guard import ALLOWED_SCHEMES
from vlserve.media.data_url import decode_data_url
from vlserve.media.decode_budget import DecodeBudget
from vlserve.media.fetch import ImageFetcher
from vlserve.media.image_cache import ImageCache
from vlserve.media.images import ImageLimits, LoadedImage, decode_image, read_size
from vlserve.media.limits import check_request_pixels

INLINE_DATA_URL_CHARS = 64 * 1024  # data: URLs up to this are decoded on the event loop (tens of microseconds)


@dataclass(frozen=True)
class MediaRef:
    """An image a request points at, and where it came from (the ``param`` its errors name)."""

    url: str  # data: URL or http(s) URL
    param: str  # e.g. messages[0].content[1].image_url


@dataclass(frozen=True)
class EncodedImage:
    """An image's bytes as the client sent them, not yet decoded, and the ``param`` its errors name."""

    data: bytes
    param: str


async def image_bytes(url: str, *, fetcher: ImageFetcher, max_bytes: int, param: str) -> bytes:
    """The bytes of a data: URL (decoded in a worker thread) or of an http(s) URL (fetched)."""
    url = url.strip()
    scheme = url.partition(":")[0].strip().lower() if ":" in url else ""
    if scheme == "data":  # a small one on the event loop: a hop to a busy thread pool would cost more
        if len(url) <= INLINE_DATA_URL_CHARS:
            return decode_data_url(url, max_bytes=max_bytes, param=param)
        return await asyncio.to_thread(decode_data_url, url, max_bytes=max_bytes, param=param)
    if scheme in ALLOWED_SCHEMES:
        return await fetcher.fetch(url, param=param)
    shown = f"'{scheme[:20]}'" if scheme else "(none)"
    raise ClientError(
        f"image URL scheme {shown} is not supported; use data:, http:// or https://",
        param=param,
        code="unsupported_url_scheme",
    )


async def load_image_url(url: str, *, fetcher: ImageFetcher, limits: ImageLimits, param: str) -> LoadedImage:
    """Decode a data: URL or fetch an http(s) URL; decoding runs in a worker thread."""
    data = await image_bytes(url, fetcher=fetcher, max_bytes=limits.max_bytes, param=param)
    return await asyncio.to_thread(decode_image, data, limits, param=param)


def _sizes(images: Sequence[EncodedImage], limits: ImageLimits) -> list[tuple[int, int]]:
    return [read_size(image.data, limits, param=image.param) for image in images]


class MediaLoader:
    """Loads the images a request points at, concurrently, each under the server's limits and within the
    server's ``budget`` of pixels decoded at once (none given: counted, not limited); with a ``cache``, an
    image decoded for the same size a moment ago is not decoded again."""

    def __init__(
        self,
        fetcher: ImageFetcher,
        limits: ImageLimits,
        *,
        cache: ImageCache | None = None,
        budget: DecodeBudget | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._limits = limits
        self._cache = cache
        self._budget = budget if budget is not None else DecodeBudget(0, wait_s=0)

    async def fetch(self, refs: Sequence[MediaRef]) -> list[EncodedImage]:
        """Every image's bytes, none decoded: data: URLs unpacked, http(s) URLs downloaded (concurrently)."""
        max_bytes = self._limits.max_bytes
        jobs = (image_bytes(r.url, fetcher=self._fetcher, max_bytes=max_bytes, param=r.param) for r in refs)
        blobs = await asyncio.gather(*jobs)
        return [EncodedImage(data, ref.param) for data, ref in zip(blobs, refs, strict=True)]

    async def decode(
        self, images: Sequence[EncodedImage], *, max_request_pixels: int | None, target_pixels: int | None
    ) -> list[LoadedImage]:
        """Check every header (each image's limits, then the request's pixel budget), then decode each
        straight to ``target_pixels`` or a little more, in worker threads (cached or not, the checks run)."""
        if not images:
            return []
        sizes = await asyncio.to_thread(_sizes, images, self._limits)
        if max_request_pixels is not None:
            check_request_pixels(sizes, max_request_pixels, param=images[0].param.split("[", 1)[0])
        jobs = [
            asyncio.ensure_future(self._decode_one(image, w * h, target_pixels))
            for image, (w, h) in zip(images, sizes, strict=True)
        ]
        try:
            return list(await asyncio.gather(*jobs))
        except BaseException:  # one image failed: the others' waits for the budget end too
            for job in jobs:
                job.cancel()
            raise

    async def _decode_one(self, image: EncodedImage, pixels: int, target_pixels: int | None) -> LoadedImage:
        """A cache hit as it is; anything else decoded in a worker thread once its ``pixels`` fit the budget."""
        limits = self._limits
        decode = partial(decode_image, image.data, limits, param=image.param, target_pixels=target_pixels)
        cache = self._cache
        if cache is not None and cache.enabled:
            variant = (target_pixels, limits.max_bytes, limits.max_pixels)
            key, cached = await asyncio.to_thread(cache.lookup, image.data, variant)
            if cached is not None:
                return cached
            decode = partial(cache.fill, key, decode)
        return await self._budget.run(pixels, decode)

    async def load(self, refs: Sequence[MediaRef]) -> list[LoadedImage]:
        """Fetch and decode ``refs`` at full size, with no per-request budget (each image's limits apply)."""
        return await self.decode(await self.fetch(refs), max_request_pixels=None, target_pixels=None)
