"""Warm-up: one real generation with an image before the server reports ready.

It exercises the whole path (template, image processor, vision tower, decoder, scheduler), so the
first user request does not pay one-time costs, and a broken checkpoint fails readiness instead
of the first request.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams

if TYPE_CHECKING:
    from vlserve.engine.base import Engine

log = logging.getLogger("vlserve.engine")


def warmup_image() -> Image.Image:
    image = Image.new("RGB", (256, 192), "white")
    draw = ImageDraw.Draw(image)
    for i, height in enumerate((60, 120, 90, 150)):
        draw.rectangle((20 + i * 55, 180 - height, 60 + i * 55, 180), fill=(40 + 50 * i, 90, 200 - 40 * i))
    return image


async def warm_up(engine: Engine) -> None:
    started = time.monotonic()
    request = EngineRequest.chat([ChatTurn.user("Describe this chart.", 1)], [warmup_image()])
    params = SamplingParams(max_tokens=4, temperature=0.0)
    prepared = await engine.prepare(request)
    await engine.check(prepared, params)
    async for _ in engine.generate(prepared, params):
        pass
    log.info("warm-up generation done in %.2f s", time.monotonic() - started)
