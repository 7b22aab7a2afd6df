"""A request's images: their bytes (data: URLs decoded, http(s) URLs fetched), then checked and decoded.

Decoding is the costly step, so it comes last: every image's header is read and the request's pixels
are checked against the per-request budget before any image is decoded, and each is then decoded
straight to the size the model needs (see :mod:`vlserve.media.images`), or taken from the decoded-image
cache when the same bytes were decoded for the same size a moment ago (:mod:`vlserve.media.image_cache`).
Every decode (a cache miss included) takes its pixels from the server-wide decode budget while it runs
(:mod:`vlserve.media.decode_budget`); a cache hit decodes nothing and takes none.

A video goes the same way: its container header is read and checked first (duration, frame count, size,
codec), its sampling planned from it, and its kept frames counted in the request's pixel budget together with
the images, before any frame is decoded (:mod:`vlserve.media.video`); it is then decoded in a worker thread
holding its pixels (the frames it keeps, and the one being decoded) from the same server-wide budget.
"""

from __future__ import annotations

import asyncio
import math
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
from vlserve.media.limits import check_media_pixels, check_request_pixels
from vlserve.media.video import LoadedVideo, VideoPlan, decode_video, plan_video
from vlserve.media.video_probe import VideoLimits, probe_video

INLINE_DATA_URL_CHARS = 64 * 1024  # data: URLs up to this are decoded on the event loop (tens of microseconds)


@dataclass(frozen=True)
class MediaRef:
    """An image (or a video) a request points at, and where it came from (the ``param`` its errors name)."""

    url: str  # data: URL or http(s) URL
    param: str  # e.g. messages[0].content[1].image_url
    kind: str = "image"  # or "video"


@dataclass(frozen=True)
class EncodedImage:
    """An image's (or a video's) bytes as the client sent them, not yet decoded, and the ``param`` its errors name."""

    data: bytes
    param: str
    kind: str = "image"  # or "video"


async def image_bytes(url: str, *, fetcher: ImageFetcher, max_bytes: int, param: str, media: str = "image") -> bytes:
    """The bytes of a data: URL (decoded in a worker thread) or of an http(s) URL (fetched); ``media`` "video":
    a video's, at most ``max_bytes`` of them."""
    url = url.strip()
    scheme = url.partition(":")[0].strip().lower() if ":" in url else ""
    if scheme == "data":  # a small one on the event loop: a hop to a busy thread pool would cost more
        if len(url) <= INLINE_DATA_URL_CHARS:
            return decode_data_url(url, max_bytes=max_bytes, param=param, media=media)
        return await asyncio.to_thread(decode_data_url, url, max_bytes=max_bytes, param=param, media=media)
    if scheme in ALLOWED_SCHEMES:
        if media == "video":
            return await fetcher.fetch(url, param=param, video_max_bytes=max_bytes)
        return await fetcher.fetch(url, param=param)
    shown = f"'{scheme[:20]}'" if scheme else "(none)"
    raise ClientError(
        f"{media} URL scheme {shown} is not supported; use data:, http:// or https://",
        param=param,
        code="unsupported_url_scheme",
    )


async def load_image_url(url: str, *, fetcher: ImageFetcher, limits: ImageLimits, param: str) -> LoadedImage:
    """Decode a data: URL or fetch an http(s) URL; decoding runs in a worker thread."""
    data = await image_bytes(url, fetcher=fetcher, max_bytes=limits.max_bytes, param=param)
    return await asyncio.to_thread(decode_image, data, limits, param=param)


def _sizes(images: Sequence[EncodedImage], limits: ImageLimits) -> list[tuple[int, int]]:
    return [read_size(image.data, limits, param=image.param) for image in images]


def _plans(videos: Sequence[EncodedImage], limits: VideoLimits, target_pixels: int | None) -> list[VideoPlan]:
    """Every video's header read and checked, and its sampling planned; no frame decoded."""
    return [
        plan_video(probe_video(v.data, limits, param=v.param), limits, target_pixels=target_pixels, param=v.param)
        for v in videos
    ]


def video_off(param: str) -> ClientError:
    """The 400 for a video sent to a server that takes none."""
    return ClientError(
        "video input is turned off on this server (VLSERVE_VIDEO=false)", param=param, code="video_disabled"
    )


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
        video: VideoLimits | None = None,  # None, or not enabled: a video is refused
    ) -> None:
        self._fetcher = fetcher
        self._limits = limits
        self.video = video if video is not None and video.enabled else None
        self._cache = cache
        self._budget = budget if budget is not None else DecodeBudget(0, wait_s=0)

    async def fetch(self, refs: Sequence[MediaRef]) -> list[EncodedImage]:
        """Every image's bytes, none decoded: data: URLs unpacked, http(s) URLs downloaded (concurrently)."""
        blobs = await asyncio.gather(*(self._bytes(ref) for ref in refs))
        return [EncodedImage(data, ref.param, ref.kind) for data, ref in zip(blobs, refs, strict=True)]

    async def _bytes(self, ref: MediaRef) -> bytes:
        if ref.kind != "video":
            return await image_bytes(ref.url, fetcher=self._fetcher, max_bytes=self._limits.max_bytes, param=ref.param)
        if self.video is None:
            raise video_off(ref.param)
        max_bytes = self.video.max_bytes
        return await image_bytes(ref.url, fetcher=self._fetcher, max_bytes=max_bytes, param=ref.param, media="video")

    async def decode(
        self, images: Sequence[EncodedImage], *, max_request_pixels: int | None, target_pixels: int | None
    ) -> list[LoadedImage | LoadedVideo]:
        """Check every header (each image's and video's limits, then the request's pixel budget, a video counted
        as the frames it keeps), then decode each image straight to ``target_pixels`` or a little more, and
        sample each video, in worker threads (cached or not, the checks run)."""
        if not images:
            return []
        pictures = [item for item in images if item.kind != "video"]
        videos = [item for item in images if item.kind == "video"]
        if videos and self.video is None:
            raise video_off(videos[0].param)
        sizes = await asyncio.to_thread(_sizes, pictures, self._limits) if pictures else []
        plans = await asyncio.to_thread(_plans, videos, self.video, target_pixels) if videos else []
        if max_request_pixels is not None:
            param = images[0].param.split("[", 1)[0]
            if plans:
                check_media_pixels(sizes, [p.kept_pixels for p in plans], max_request_pixels, param=param)
            else:
                check_request_pixels(sizes, max_request_pixels, param=param)
        size_of, plan_of = iter(sizes), iter(plans)
        jobs = [
            asyncio.ensure_future(
                self._decode_video(item, next(plan_of)) if item.kind == "video"
                else self._decode_one(item, math.prod(next(size_of)), target_pixels)
            )
            for item in images
        ]  # fmt: skip
        try:
            return list(await asyncio.gather(*jobs))
        except BaseException:  # one image failed: the others' waits for the budget end too
            for job in jobs:
                job.cancel()
            raise

    async def _decode_video(self, video: EncodedImage, plan: VideoPlan) -> LoadedVideo:
        """Sampled in a worker thread once the frames it keeps (and the one being decoded) fit the budget."""
        assert self.video is not None
        return await self._budget.run(
            plan.decode_pixels, partial(decode_video, video.data, self.video, param=video.param, plan=plan)
        )

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
