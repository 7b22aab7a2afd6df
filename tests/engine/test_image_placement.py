"""Images the chat template does not place: the error names the message that lost them and says where images
go, whichever way the request reached the engine (the API refuses them earlier: tests/api/test_content.py)."""

from __future__ import annotations

import pytest
from transformers import AutoImageProcessor, AutoTokenizer

from tests.support.images import chart
from vlserve.engine.base import ChatTurn
from vlserve.engine.transformers.prompting import PromptBuilder
from vlserve.errors import ClientError


@pytest.fixture(scope="module")
def builder(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    processor = AutoImageProcessor.from_pretrained(demo_model)
    return PromptBuilder(tokenizer, processor, tokenizer.chat_template, min_pixels=32 * 1024, max_pixels=64 * 1024)


def test_an_image_the_template_drops_names_its_message_and_where_images_go(builder):
    turns = [
        ChatTurn("system", ({"type": "text", "text": "be brief"}, {"type": "image"})),
        ChatTurn.user("what is this?", num_images=1),
    ]
    with pytest.raises(ClientError) as err:
        builder.build(turns, [chart(1, (64, 64)), chart(2, (64, 64))])
    assert err.value.param == "messages[0].content[1]"
    assert err.value.code == "unsupported_content_type"
    assert "placed 1 of the request's 2 images" in err.value.message
    assert "system message" in err.value.message and "user messages" in err.value.message


def test_images_in_user_and_tool_messages_are_placed(builder):
    turns = [
        ChatTurn.user("first", num_images=1),
        ChatTurn("tool", ({"type": "image"}, {"type": "text", "text": "the chart"}), tool_call_id="call_1"),
    ]
    prompt = builder.build(turns, [chart(1, (64, 64)), chart(2, (64, 64))])
    assert prompt.num_images == 2 and sum(prompt.mm_token_type_ids) > 0
