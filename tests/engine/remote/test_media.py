"""Images for an upstream: resized once into the budget, sent as the client's bytes when nothing changed."""

from __future__ import annotations

import base64
import io

from PIL import Image

from tests.support.images import chart, encode
from vlserve.engine.base import MediaItem
from vlserve.engine.remote.media import inline_image
from vlserve.media.images import ImageLimits, decode_image
from vlserve.media.resize import ImageBudget

BUDGET = ImageBudget(64 * 32 * 32, 256 * 32 * 32)
LIMITS = ImageLimits(max_bytes=10**8, max_pixels=10**8)


def item(data: bytes) -> MediaItem:
    loaded = decode_image(data, LIMITS, param="x")
    return MediaItem(loaded.image, source=loaded.source, source_type=loaded.source_type)


def sent(url: str) -> tuple[str, Image.Image]:
    header, payload = url.split(",", 1)
    return header, Image.open(io.BytesIO(base64.b64decode(payload)))


def test_auto_keeps_the_clients_kind_of_encoding_and_passes_fitting_images_untouched():
    photo = encode(chart(1, (1200, 900)), "JPEG")
    header, image = sent(inline_image(item(photo), BUDGET, "auto")[0])
    assert header == "data:image/jpeg;base64" and image.size == BUDGET.size_for(1200, 900)
    drawing = encode(chart(2, (1200, 900)), "PNG")
    header, image = sent(inline_image(item(drawing), BUDGET, "auto")[0])
    assert header == "data:image/png;base64" and image.tobytes() == BUDGET.fit(chart(2, (1200, 900))).tobytes()
    fitting = encode(chart(3, (512, 384)), "JPEG")
    url, tokens = inline_image(item(fitting), BUDGET, "png")
    assert url == "data:image/jpeg;base64," + base64.b64encode(fitting).decode() and tokens == 16 * 12


def test_a_forced_format_applies_to_every_resized_image():
    header, _ = sent(inline_image(item(encode(chart(4, (1200, 900)), "PNG")), BUDGET, "jpeg")[0])
    assert header == "data:image/jpeg;base64"
    header, _ = sent(inline_image(item(encode(chart(5, (1200, 900)), "JPEG")), BUDGET, "png")[0])
    assert header == "data:image/png;base64"
