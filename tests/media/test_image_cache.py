"""The decoded-image cache: the same bytes at the same pixel budget are decoded once within a window,
bounded in bytes, never shared mutably, and never a way around a limit."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from functools import partial

import pytest
from PIL import ImageDraw
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import client, make_client  # noqa: F401
from tests.api.fakes import image_message
from tests.support.images import chart, data_url, encode
from vlserve.errors import ImageError
from vlserve.media import ImageCache, ImageFetcher, ImageLimits, MediaLoader
from vlserve.media.image_cache import footprint
from vlserve.media.images import LoadedImage, decode_image
from vlserve.media.sources import EncodedImage

LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)
PARAM = "messages[0].content[0].image_url"
MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recording_cache(max_bytes: int = 64 * MiB, ttl_s: float = 300.0, clock: Clock | None = None):
    outcomes: list[str] = []
    cache = ImageCache(max_bytes, ttl_s, on_lookup=outcomes.append, clock=clock or time.monotonic)
    return cache, outcomes


def get(cache: ImageCache, data: bytes, target: int | None = None) -> LoadedImage:
    return cache.get(data, target, partial(decode_image, data, LIMITS, param=PARAM, target_pixels=target))


def decode_all(
    cache: ImageCache | None,
    images: list[bytes],
    *,
    limits: ImageLimits = LIMITS,
    max_request_pixels: int | None = None,
    target: int | None = None,
) -> list[LoadedImage]:
    async def main():
        async with ImageFetcher(timeout=1, max_redirects=0, max_bytes=limits.max_bytes, allowlist=[]) as fetcher:
            encoded = [EncodedImage(data, f"messages[0].content[{i}].image_url") for i, data in enumerate(images)]
            loader = MediaLoader(fetcher, limits, cache=cache)
            return await loader.decode(encoded, max_request_pixels=max_request_pixels, target_pixels=target)

    return asyncio.run(main())


def test_the_same_bytes_at_the_same_budget_are_decoded_once():
    cache, outcomes = recording_cache()
    data = encode(chart(1, (2000, 1500)), "JPEG")
    first = decode_all(cache, [data], target=400_000)[0]
    second = decode_all(cache, [data], target=400_000)[0]
    assert outcomes == ["miss", "hit"]
    assert second.image.size == first.image.size and second.image.width * second.image.height >= 400_000
    assert second.image.tobytes() == first.image.tobytes()
    assert second.image is not first.image  # each caller gets its own image


def test_another_budget_or_other_bytes_is_a_miss():
    cache, outcomes = recording_cache()
    data = encode(chart(2, (1600, 1200)), "JPEG")
    small = get(cache, data, 200_000)
    large = get(cache, data, 1_000_000)
    get(cache, encode(chart(3, (1600, 1200)), "JPEG"), 200_000)
    assert outcomes == ["miss", "miss", "miss"]
    assert small.image.size != large.image.size
    get(cache, data, 200_000)
    assert outcomes[-1] == "hit"


def test_identical_images_in_one_request_are_decoded_once():
    cache, outcomes = recording_cache()
    data = encode(chart(4, (1200, 900)))
    loaded = decode_all(cache, [data, data, data], target=300_000)
    assert sorted(outcomes) == ["hit", "hit", "miss"]
    assert len({id(item.image) for item in loaded}) == 3
    assert len({item.image.tobytes() for item in loaded}) == 1


def test_concurrent_decodes_of_the_same_image_wait_for_one():
    cache, outcomes = recording_cache()
    data = encode(chart(5))
    calls: list[int] = []

    def slow_decode() -> LoadedImage:
        calls.append(1)
        time.sleep(0.2)
        return decode_image(data, LIMITS, param=PARAM)

    threads = [threading.Thread(target=cache.get, args=(data, None, slow_decode)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(outcomes) == ["hit", "hit", "hit", "miss"]


def test_the_byte_bound_evicts_the_least_recently_used():
    images = [encode(chart(seed, (300, 200))) for seed in (10, 11, 12)]
    sizes = [footprint(decode_image(data, LIMITS, param=PARAM)) for data in images]
    cache, outcomes = recording_cache(max_bytes=sizes[0] + sizes[1] + sizes[2] // 2)
    a, b, c = images
    get(cache, a)
    get(cache, b)
    get(cache, a)  # a is now more recently used than b
    get(cache, c)  # b goes to make room
    assert len(cache) == 2 and cache.held_bytes <= cache.max_bytes
    get(cache, a)
    get(cache, b)
    assert outcomes == ["miss", "miss", "hit", "miss", "hit", "miss"]


def test_an_image_larger_than_the_cache_is_served_but_not_kept():
    data = encode(chart(13, (400, 300)))
    cache, outcomes = recording_cache(max_bytes=1000)
    assert get(cache, data).image.size == (400, 300)
    assert len(cache) == 0 and cache.held_bytes == 0
    get(cache, data)
    assert outcomes == ["miss", "miss"]


def test_an_entry_expires_after_the_window():
    clock = Clock()
    cache, outcomes = recording_cache(ttl_s=300, clock=clock)
    data = encode(chart(14))
    get(cache, data)
    clock.now += 299
    get(cache, data)
    clock.now += 2  # 301 s after the decode: a hit does not extend the window
    get(cache, data)
    assert outcomes == ["miss", "hit", "miss"]


def test_a_cached_image_is_not_changed_by_what_a_consumer_does_with_its_copy():
    cache, _ = recording_cache()
    data = encode(chart(15, (320, 240)))
    first = get(cache, data)
    pixels = first.image.tobytes()
    ImageDraw.Draw(first.image).rectangle((0, 0, 319, 239), fill=(0, 0, 0))
    first.image.paste((255, 0, 255), (0, 0, 100, 100))
    first.image.save(io.BytesIO(), format="JPEG", quality=10)
    second = get(cache, data)
    assert second.image.tobytes() == pixels
    assert second.source == data  # an exact PNG keeps the client's bytes, so the remote engine sends them as they are


def test_limits_refuse_the_same_way_whether_or_not_the_image_is_cached():
    cache, outcomes = recording_cache()
    data = encode(chart(16, (2000, 1500)), "JPEG")  # 3 M pixels
    decode_all(cache, [data])
    assert outcomes == ["miss"]

    def refusal(with_cache: ImageCache | None, **kwargs) -> tuple:
        with pytest.raises(ImageError) as info:
            decode_all(with_cache, [data, data], **kwargs)
        return info.value.status_code, info.value.code, info.value.param, info.value.message

    over_budget = {"max_request_pixels": 5_000_000}  # two of them: 6 M pixels
    assert refusal(cache, **over_budget) == refusal(None, **over_budget)
    small_images = {"limits": ImageLimits(max_bytes=LIMITS.max_bytes, max_pixels=1_000_000)}
    assert refusal(cache, **small_images) == refusal(None, **small_images)
    assert refusal(cache, **small_images)[1] == "image_too_large"
    assert outcomes == ["miss"]  # refused from the headers, before the cache was asked


def test_a_failed_decode_is_not_cached():
    cache, outcomes = recording_cache()
    data = encode(chart(17, (400, 300)))
    truncated = data[: len(data) // 2]
    for _ in range(2):
        with pytest.raises(ImageError) as info:
            get(cache, truncated)
        assert info.value.code == "truncated_image"
    assert outcomes == ["miss", "miss"] and len(cache) == 0


def test_zero_bytes_turns_the_cache_off():
    cache, outcomes = recording_cache(max_bytes=0)
    data = encode(chart(18))
    loaded = decode_all(cache, [data, data])
    decode_all(cache, [data])
    assert outcomes == [] and len(cache) == 0
    assert loaded[0].image.tobytes() == loaded[1].image.tobytes()


def lookups(http) -> dict[str, float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "vlserve_image_cache_lookups_total"
    }


def test_a_second_chat_request_with_the_same_image_is_a_cache_hit(client):  # noqa: F811
    url = data_url(encode(chart(19, (640, 480)), "JPEG"), "image/jpeg")
    before = lookups(client)
    for _ in range(2):
        body = {"model": "fake-vl", "messages": image_message(url), "max_tokens": 4}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
    after = lookups(client)
    assert after["miss"] - before["miss"] == 1
    assert after["hit"] - before["hit"] == 1
