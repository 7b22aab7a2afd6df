"""Turn an ``image_url`` value (data: URL or http(s) URL) into a decoded RGB image."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from vlserve.errors import ClientError
from vlserve.media.address_guard import ALLOWED_SCHEMES
from vlserve.media.data_url import decode_data_url
from vlserve.media.fetch import ImageFetcher
from vlserve.media.images import ImageLimits, LoadedImage, decode_image


async def load_image_url(url: str, *, fetcher: ImageFetcher, limits: ImageLimits, param: str) -> LoadedImage:
    """Decode a data: URL or fetch an http(s) URL; decoding runs in a worker thread."""
    url = url.strip()
    scheme = url.partition(":")[0].strip().lower() if ":" in url else ""
    if scheme == "data":
        return await asyncio.to_thread(_decode_data_url, url, limits, param)
    if scheme in ALLOWED_SCHEMES:
        data = await fetcher.fetch(url, param=param)
        return await asyncio.to_thread(decode_image, data, limits, param=param)
    shown = f"'{scheme[:20]}'" if scheme else "(none)"
    raise ClientError(
        f"image URL scheme {shown} is not supported; use data:, http:// or https://",
        param=param,
        code="unsupported_url_scheme",
    )


def _decode_data_url(url: str, limits: ImageLimits, param: str) -> LoadedImage:
    return decode_image(decode_data_url(url, max_bytes=limits.max_bytes, param=param), limits, param=param)


@dataclass(frozen=True)
class MediaRef:
    """An image a request points at, and where it came from (the ``param`` its errors name)."""

    url: str  # data: URL or http(s) URL
    param: str  # e.g. messages[0].content[1].image_url


class MediaLoader:
    """Loads the images a request points at, concurrently, each under the server's limits."""

    def __init__(self, fetcher: ImageFetcher, limits: ImageLimits) -> None:
        self._fetcher = fetcher
        self._limits = limits

    async def load(self, refs: Sequence[MediaRef]) -> list[LoadedImage]:
        jobs = (load_image_url(r.url, fetcher=self._fetcher, limits=self._limits, param=r.param) for r in refs)
        return list(await asyncio.gather(*jobs))
