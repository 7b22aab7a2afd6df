"""Images in: decoding with limits, base64 data URLs, and SSRF-safe fetching of image URLs."""

from vlserve.media.address_guard import Allowlist, check_url, is_address_allowed, parse_allowlist
from vlserve.media.data_url import decode_data_url
from vlserve.media.decode_budget import DecodeBudget
from vlserve.media.fetch import ImageFetcher
from vlserve.media.image_cache import ImageCache
from vlserve.media.images import load_image
from vlserve.media.limits import ImageLimits
from vlserve.media.sources import MediaLoader, MediaRef, load_image_url

__all__ = [
    "Allowlist",
    "DecodeBudget",
    "ImageCache",
    "ImageFetcher",
    "ImageLimits",
    "MediaLoader",
    "MediaRef",
    "check_url",
    "decode_data_url",
    "is_address_allowed",
    "load_image",
    "load_image_url",
    "parse_allowlist",
]
