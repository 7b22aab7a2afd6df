"""Splitting OpenAI message content: text and images in order, clear errors otherwise."""

import pytest

from vlserve.api.content import parse_messages
from vlserve.api.message_protocol import AssistantMessage, SystemMessage, ToolMessage, UserMessage
from vlserve.errors import ClientError


def msgs(*content):
    return [UserMessage(role="user", content=list(content))]


def test_text_and_images_keep_their_order():
    turns, refs = parse_messages(
        msgs(
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "compare"},
            {"type": "image_url", "image_url": "https://example.com/b.png"},
        ),
        max_images=8,
    )
    assert [p["type"] for p in turns[0].parts] == ["image", "text", "image"]
    assert [r.url for r in refs] == ["data:image/png;base64,AAAA", "https://example.com/b.png"]
    assert refs[1].param == "messages[0].content[2].image_url"


def test_string_content_and_developer_role():
    turns, refs = parse_messages([SystemMessage(role="developer", content="be brief")], max_images=8)
    assert turns[0].role == "system"
    assert turns[0].parts == ({"type": "text", "text": "be brief"},)
    assert refs == []


def test_unknown_part_type_names_the_part():
    with pytest.raises(ClientError) as err:
        parse_messages(msgs({"type": "text", "text": "x"}, {"type": "audio_url", "audio_url": {}}), max_images=8)
    assert err.value.param == "messages[0].content[1].type"
    assert "audio_url" in err.value.message


def test_too_many_images():
    parts = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{i}"}} for i in range(3)]
    with pytest.raises(ClientError) as err:
        parse_messages(msgs(*parts), max_images=2)
    assert err.value.code == "too_many_images"
    assert "at most 2" in err.value.message


def test_image_part_without_url():
    with pytest.raises(ClientError) as err:
        parse_messages(msgs({"type": "image_url", "image_url": {}}), max_images=8)
    assert err.value.param == "messages[0].content[0].image_url"


def test_images_only_in_user_and_tool_messages():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(ClientError) as err:
        parse_messages([AssistantMessage(role="assistant", content=[image])], max_images=8)
    assert (err.value.param, err.value.code) == ("messages[0].content[0].type", "unsupported_content_type")
    assert "text only" in err.value.message
    for role in ("system", "developer"):  # Qwen3-VL's template would drop it: refused before any work, by index
        text = {"type": "text", "text": "be brief"}
        with pytest.raises(ClientError) as err:
            parse_messages([SystemMessage(role=role, content=[text, image]), *msgs(text)], max_images=8)
        assert (err.value.param, err.value.code) == ("messages[0].content[1].type", "unsupported_content_type")
        assert f"a {role} message takes text only" in err.value.message and "user" in err.value.message
    _, refs = parse_messages([ToolMessage(role="tool", tool_call_id="call_1", content=[image])], max_images=8)
    assert [r.param for r in refs] == ["messages[0].content[0].image_url"]
