"""A video through the real server and the official openai client: its frames reach the model (the prompt grows
by their tokens), two clips give different prompts, and a clip that claims ten hours is refused by its header."""

from __future__ import annotations

import openai
import pytest

from tests.support.videos import make_video, ten_hour_video, video_data_url

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"


def ask(client, *parts, **extra):
    content = [*parts, {"type": "text", "text": "What happens in this video?"}]
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=3, temperature=0, **extra
    )


def clip(data: bytes, mime: str = "video/mp4") -> dict:
    return {"type": "video_url", "video_url": {"url": video_data_url(data, mime)}}


def test_a_video_reaches_the_model_as_frames(openai_client):
    text_only = ask(openai_client).usage.prompt_tokens
    short = ask(openai_client, clip(make_video(frames=4, rate=2))).usage.prompt_tokens
    longer = ask(openai_client, clip(make_video("vp9-webm", frames=8, rate=2), "video/webm")).usage.prompt_tokens
    assert text_only < short < longer  # 2 s at 2 fps against 4 s: twice the frame pairs


def test_a_clip_that_claims_ten_hours_is_refused_before_decoding(openai_client):
    with pytest.raises(openai.APIStatusError) as caught:
        ask(openai_client, clip(ten_hour_video(), "video/quicktime"))
    assert caught.value.status_code == 413 and "VLSERVE_VIDEO_MAX_SECONDS" in caught.value.body["message"]
