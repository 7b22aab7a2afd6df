"""langchain-openai, unchanged, against the real server: the calls its users make every day.

Random weights answer nonsense, so the checks are on shape and protocol: an image is read, streamed usage
is counted once, structured output parses into the schema by both of LangChain's methods, and a bound
tool is called when required.
"""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.support.images import chart_url

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"


class Chart(BaseModel):
    """What kind of chart it is and how many bars it has."""

    kind: Literal["bar", "line", "pie"]
    bars: int = Field(ge=1, le=9)


@tool
def get_weather(city: Literal["Paris", "Oslo"], days: int = Field(ge=1, le=7)) -> str:
    """The weather forecast for a city."""
    return f"sunny in {city} for {days} days"


@pytest.fixture
def chat(server) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL, base_url=f"{server.url}/v1", api_key="unused", temperature=0, max_tokens=60, max_retries=0
    )


def test_invoke_with_an_image(chat):
    question = HumanMessage(
        content=[{"type": "text", "text": "What values?"}, {"type": "image_url", "image_url": {"url": chart_url(3)}}]
    )
    answer = chat.invoke([question])
    assert isinstance(answer, AIMessage) and answer.content
    assert answer.usage_metadata["input_tokens"] > 20  # the image's visual tokens were counted


def test_streamed_usage_is_counted_once(chat):
    whole = chat.invoke("Describe a bar chart.")
    total = None
    for chunk in chat.bind(max_tokens=60).stream("Describe a bar chart.", stream_usage=True):
        total = chunk if total is None else total + chunk
    assert total.content == whole.content
    assert total.usage_metadata["input_tokens"] == whole.usage_metadata["input_tokens"]
    assert total.usage_metadata["output_tokens"] == whole.usage_metadata["output_tokens"]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output(chat, method):
    answer = chat.with_structured_output(Chart, method=method).invoke("What kind of chart is this?")
    assert isinstance(answer, Chart)


def test_a_required_bound_tool_is_called(chat):
    answer = chat.bind_tools([get_weather], tool_choice="get_weather").invoke("Weather in Oslo this week?")
    (call,) = answer.tool_calls
    assert call["name"] == "get_weather" and call["args"]["city"] in ("Paris", "Oslo")
    assert 1 <= call["args"]["days"] <= 7
    answer = chat.bind_tools([get_weather], tool_choice="required", parallel_tool_calls=False).invoke("Weather?")
    assert [c["name"] for c in answer.tool_calls] == ["get_weather"]
