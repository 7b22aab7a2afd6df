"""Turn a decoded image of any mode into plain 8-bit RGB, compositing transparency onto white."""

from __future__ import annotations

from PIL import Image

_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy of ``image``: alpha/palette transparency over white, 16-bit and float scaled to 8 bits."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _scale_to_l(image).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _over_white(image.convert("RGBA"))
    return image.convert("RGB")


def _over_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _scale_to_l(image: Image.Image) -> Image.Image:
    """Map 16/32-bit integer or float greyscale onto 0..255 (``convert`` alone would clip)."""
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    _, high = image.getextrema()
    if image.mode == "F" and high <= 1.0:
        scale = 255.0
    elif high > 255:
        scale = 1 / 257  # 0..65535 -> 0..255
    else:
        scale = 1.0
    if scale != 1.0:
        image = image.point(lambda value: value * scale)
    return image.convert("L")
