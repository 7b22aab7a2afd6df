"""Videos and several pictures for an upstream: a video goes as the client's own container bytes in one
``video_url`` part, never as frames; several pictures are labelled by the upstream's template (add_vision_id)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from PIL import Image

from tests.support.images import chart
from vlserve.engine.base import ChatTurn, EngineRequest, MediaItem
from vlserve.engine.remote import RemoteConfig, RemoteEngine
from vlserve.engine.remote.media import inline_video
from vlserve.engine.remote.wire import chat_inputs
from vlserve.errors import ServerError
from vlserve.media.resize import ImageBudget

BUDGET = ImageBudget(64 * 32 * 32, 256 * 32 * 32)
WEBM = b"\x1aE\xdf\xa3 a webm container"


def video(frames: int = 4, source: bytes | None = WEBM, kind: str | None = "video/webm") -> MediaItem:
    shots = tuple(Image.new("RGB", (320, 192), (i * 40, 0, 0)) for i in range(frames))
    times = tuple(i / 2 for i in range(frames))
    return MediaItem(shots[0], "video", source, kind, shots, times, 2.0)


def asked(*kinds: str) -> ChatTurn:
    return ChatTurn("user", (*({"type": k} for k in kinds), {"type": "text", "text": "what changes?"}))


def test_a_video_goes_upstream_whole_as_the_clients_bytes_in_one_video_url_part():
    engine = RemoteEngine(RemoteConfig(("http://127.0.0.1:9",), BUDGET, max_images=8, warmup=False))
    request = EngineRequest((asked("image", "video"),), (MediaItem(chart(1, (256, 256))), video()))
    prepared = asyncio.run(engine.prepare(request))
    asyncio.run(engine.close())
    parts = prepared.inputs["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "video_url", "text"]
    assert parts[1]["video_url"]["url"] == "data:video/webm;base64," + base64.b64encode(WEBM).decode()
    assert prepared.image_tokens == 64 + 2 * (320 // 32) * (192 // 32)  # the image, then two groups of frames


def test_a_video_counts_a_frames_tokens_per_pair_of_frames():
    url, tokens = inline_video(video(frames=5, kind=None), BUDGET)
    assert url.startswith("data:video/mp4;base64,")  # no type known: MP4, the most common
    assert tokens == 3 * 10 * 6


def test_a_video_without_its_container_bytes_is_a_server_error_not_a_frame_list():
    with pytest.raises(ServerError, match="container bytes"):
        inline_video(video(source=None), BUDGET)


def test_several_pictures_ask_the_upstream_template_for_labels_and_one_does_not():
    urls = ["data:image/png;base64,AA", "data:video/mp4;base64,AA"]
    two = chat_inputs(EngineRequest((asked("image", "video"),), (MediaItem(chart(1)), video())), urls)
    assert two["chat_template_kwargs"] == {"add_vision_id": True}
    one = chat_inputs(EngineRequest((asked("image"),), (MediaItem(chart(1)),)), urls[:1])
    assert "chat_template_kwargs" not in one
    theirs = EngineRequest(
        (asked("image", "image"),), MediaItem.images([chart(1), chart(2)]),
        chat_template_kwargs={"add_vision_id": False, "enable_thinking": False},
    )  # fmt: skip
    assert chat_inputs(theirs, urls)["chat_template_kwargs"] == {"add_vision_id": False, "enable_thinking": False}
