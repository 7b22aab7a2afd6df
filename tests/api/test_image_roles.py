"""An image in a message whose images the model never sees (a system message: Qwen3-VL's template drops it) is
a 400 naming the part and saying where images go, before the image is fetched and on every engine."""

from __future__ import annotations

from tests.api.fakes import FakeEngine
from tests.support.images import chart, data_url, encode


def test_an_image_in_a_system_message_is_refused_by_index_before_any_work(make_client, image_host):
    api = make_client(FakeEngine(), url_allowlist=["127.0.0.1/32"])
    before = len(image_host.paths())  # the host is shared with other tests
    fetched = f"{image_host.url}/chart.png"
    system = [{"type": "text", "text": "be brief"}, {"type": "image_url", "image_url": {"url": fetched}}]
    user = [{"type": "image_url", "image_url": {"url": data_url(encode(chart(1)))}}, {"type": "text", "text": "?"}]
    for role in ("system", "developer"):
        messages = [{"role": role, "content": system}, {"role": "user", "content": user}]
        for stream in (False, True):
            r = api.post("/v1/chat/completions", json={"messages": messages, "stream": stream})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["param"], error["code"]) == ("messages[0].content[1].type", "unsupported_content_type")
            assert f"a {role} message takes text only" in error["message"] and "user" in error["message"]
    assert "/chart.png" not in image_host.paths()[before:]  # the image was never fetched
