"""A reasoning model's answer in OpenAI's shapes: the thinking under both names, apart from the content."""

from __future__ import annotations

import asyncio
import json

from vlserve.api.chat_format import chat_chunks, chat_response
from vlserve.engine.base import Delta, Usage
from vlserve.service import Completion


def test_a_whole_answer_carries_reasoning_under_both_names_and_counts_it():
    completion = Completion("8", "stop", Usage(10, 6, reasoning_tokens=4), reasoning="Three and five.")
    body = chat_response(completion, model="m", request_id="r")
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "8", "reasoning_content": "Three and five.",
                       "reasoning": "Three and five."}  # fmt: skip
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}
    hidden = chat_response(completion, model="m", request_id="r", include_reasoning=False)["choices"][0]["message"]
    assert hidden == {"role": "assistant", "content": "8"}


def test_a_model_that_does_not_reason_answers_as_before():
    body = chat_response(Completion("hi", "stop", Usage(3, 1)), model="m", request_id="r")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert "completion_tokens_details" not in body["usage"]


def test_cut_off_while_reasoning_the_content_is_null():
    completion = Completion("", "length", Usage(10, 6, reasoning_tokens=6), reasoning="still")
    assert chat_response(completion, model="m", request_id="r")["choices"][0]["message"]["content"] is None


def test_streamed_reasoning_deltas_have_no_content_key():
    async def deltas():
        yield Delta("", reasoning="why")
        yield Delta("8", "stop", usage=Usage(3, 2, reasoning_tokens=1))

    async def collect():
        return [e async for e in chat_chunks(deltas(), model="m", request_id="r", include_usage=True)]

    events = [json.loads(e[6:]) for e in asyncio.run(collect()) if e != "data: [DONE]\n\n"]
    assert events[1]["choices"][0]["delta"] == {"reasoning_content": "why", "reasoning": "why"}
    assert events[2]["choices"][0]["delta"] == {"content": "8"}
    assert events[3]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}
