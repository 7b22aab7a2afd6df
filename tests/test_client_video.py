"""`vlserve ask` sends video files as video_url parts (data: URLs of the right type) and images as image_url."""

from __future__ import annotations

import base64

from tests.support.videos import make_video
from vlserve.client import image_part


def test_ask_sends_a_video_file_as_a_video_part(tmp_path):
    clip = tmp_path / "clip.webm"
    clip.write_bytes(make_video("vp9-webm"))
    part = image_part(str(clip))
    assert part["type"] == "video_url"
    header, _, payload = part["video_url"]["url"].partition(",")
    assert header == "data:video/webm;base64" and base64.b64decode(payload) == clip.read_bytes()
    assert image_part("https://example.com/a.mov?x=1") == {
        "type": "video_url", "video_url": {"url": "https://example.com/a.mov?x=1"}
    }  # fmt: skip
    assert image_part("https://example.com/a.png")["type"] == "image_url"
