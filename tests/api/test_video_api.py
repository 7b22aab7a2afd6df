"""Videos on /v1/chat/completions (video_url parts) and /v1/chat/vision (video_file), over the fake engine."""

from __future__ import annotations

import dataclasses
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.api.fakes import FakeEngine
from tests.support.images import data_url, solid
from tests.support.videos import corrupt_video, make_video, ten_hour_video, video_data_url
from vlserve.engine.base import EngineRequest

CLIP = make_video(frames=30, rate=10, size=(64, 48))  # 3 s: six frames at 2 fps


class Recording(FakeEngine):
    """The fake engine, keeping every request it was asked to prepare."""

    def __init__(self) -> None:
        super().__init__(max_model_len=400)
        self.requests: list[EngineRequest] = []

    async def prepare(self, request: EngineRequest):
        self.requests.append(request)
        return await super().prepare(request)


def video_part(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


def chat(client, *parts: dict, text: str = "what happens"):
    body = {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}], "max_tokens": 30}
    return client.post("/v1/chat/completions", json=body)


def error_of(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if code is not None:
        assert error["code"] == code, error
    return error


def test_a_video_reaches_the_engine_as_its_sampled_frames_with_timestamps(make_client):
    engine = Recording()
    client = make_client(engine)
    image = data_url(solid((40, 30)))
    r = chat(client, {"type": "image_url", "image_url": {"url": image}}, video_part(video_data_url(CLIP)))
    assert r.status_code == 200, r.text
    assert "video:6x64x64" in r.json()["choices"][0]["message"]["content"]
    request = engine.requests[-1]
    assert [p["type"] for p in request.turns[0].parts] == ["image", "video", "text"]
    image_item, video = request.media
    assert image_item.kind == "image" and video.kind == "video"
    assert video.timestamps == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5) and video.fps == 2.0 and len(video.frames) == 6
    assert video.image is video.frames[0] and video.source == CLIP and video.source_type == "video/mp4"


def test_qwens_own_video_part_and_the_settings_for_fps_and_frames(make_client):
    engine = Recording()
    client = make_client(engine, video_fps=1.0, video_max_frames=2)
    assert chat(client, {"type": "video", "video": video_data_url(CLIP)}).status_code == 200
    video = engine.requests[-1].media[0]
    assert len(video.frames) == 2 and video.timestamps == (0.0, 1.5)  # 2 frames over 3 s


def test_a_video_url_is_fetched_through_the_address_guard(make_client):
    class Clip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(CLIP)))
            self.end_headers()
            self.wfile.write(CLIP)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Clip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    try:
        refused = chat(make_client(), video_part(url))  # loopback: refused unless allowlisted
        assert error_of(refused, 403, "url_refused")["param"] == "messages[0].content[0].video_url"
        engine = Recording()
        assert chat(make_client(engine, url_allowlist=["127.0.0.1/32"]), video_part(url)).status_code == 200
        assert engine.requests[-1].media[0].source == CLIP
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("data", "settings", "status", "code", "says"),
    [
        (ten_hour_video(), {}, 413, "video_too_long", "VLSERVE_VIDEO_MAX_SECONDS"),
        (corrupt_video(), {}, 400, "invalid_video", "not decodable"),
        (CLIP, {"video_max_bytes": 1024}, 413, "payload_too_large", "VLSERVE_VIDEO_MAX_BYTES"),
        (CLIP, {"video_max_pixels": 1024}, 400, "video_too_large", "VLSERVE_VIDEO_MAX_PIXELS"),
        (CLIP, {"video_max_decode_pixels": 10_000}, 413, "video_too_large", "VLSERVE_VIDEO_MAX_DECODE_PIXELS"),
        (CLIP, {"max_request_pixels": 20_000}, 400, "image_too_large", "VLSERVE_MAX_REQUEST_PIXELS"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), {}, 415, "unsupported_video_format", "mp4, mov or WebM"),
    ],
    ids=["ten hours", "corrupt", "bytes", "resolution", "decoding", "request pixels", "not a video"],
)
def test_a_video_over_a_limit_or_undecodable_is_refused_naming_it(make_client, data, settings, status, code, says):
    engine = Recording()
    error = error_of(chat(make_client(engine, **settings), video_part(video_data_url(data))), status, code)
    assert says in error["message"] and error["param"].startswith("messages")
    assert engine.requests == [], "refused before the engine"


def test_video_turned_off_is_refused_naming_the_setting(make_client):
    error = error_of(chat(make_client(video=False), video_part(video_data_url(CLIP))), 400, "video_disabled")
    assert "VLSERVE_VIDEO=false" in error["message"] and error["param"] == "messages[0].content[0].type"


def test_too_many_videos_and_an_image_data_url_as_a_video(make_client):
    client = make_client(max_videos_per_request=1)
    error = error_of(chat(client, video_part(video_data_url(CLIP)), video_part(video_data_url(CLIP))), 400)
    assert error["code"] == "too_many_videos" and "VLSERVE_MAX_VIDEOS_PER_REQUEST" in error["message"]
    error = error_of(chat(client, video_part(data_url(solid((8, 8))))), 400, "invalid_data_url")
    assert "video/*" in error["message"]


@pytest.mark.parametrize("engine_videos", [1, 0])
def test_an_engines_own_lower_video_limit_refuses_before_any_video_is_decoded(make_client, engine_videos):
    engine = Recording()  # a managed vLLM told fewer videos through --vllm-args reports its cap in its info
    engine._info = dataclasses.replace(engine.info, max_videos_per_request=engine_videos)
    client = make_client(engine)
    videos = [video_part(video_data_url(corrupt_video()))] * (engine_videos + 1)  # decoding would fail first
    error = error_of(chat(client, *videos), 400, "too_many_videos" if engine_videos else "unsupported_content_type")
    assert "--limit-mm-per-prompt" in error["message"] and engine.requests == []
    files = [("video_file", ("c.mp4", corrupt_video(), "video/mp4"))] * (engine_videos + 1)
    error = error_of(client.post("/v1/chat/vision", data={"prompt": "x"}, files=files), 400)
    assert "--limit-mm-per-prompt" in error["message"] and error["param"] == "video_file"


def test_video_files_on_the_vision_endpoint(make_client):
    engine = Recording()
    client = make_client(engine)
    files = [("video_file", ("clip.webm", make_video("vp9-webm", frames=10), "video/webm"))]
    r = client.post("/v1/chat/vision", data={"prompt": "what happens"}, files=files)
    assert r.status_code == 200, r.text
    video = engine.requests[-1].media[0]
    assert video.kind == "video" and video.source_type == "video/webm" and len(video.frames) == 2
    assert error_of(client.post("/v1/chat/vision", data={"prompt": "x"}), 400)["param"] == "image_file"
    off = make_client(video=False).post("/v1/chat/vision", data={"prompt": "x"}, files=files)
    assert error_of(off, 400, "video_disabled")["param"] == "video_file"


def test_the_openapi_schema_declares_video_parts_and_uploads(client):
    schema = client.get("/openapi.json").text
    assert '"VideoURLPart"' in schema and '"video/mp4, video/webm, video/quicktime"' in schema
