"""Shared fixtures for the demo-model tests."""

from __future__ import annotations

import pytest
from transformers import AutoImageProcessor, AutoTokenizer

from vlserve.engine.transformers.prompting import PromptBuilder


@pytest.fixture(scope="session")
def parts(demo_model):
    """(PromptBuilder, tokenizer) of the random demo checkpoint, at the trained 32-64-token pixel budget."""
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    processor = AutoImageProcessor.from_pretrained(demo_model)
    builder = PromptBuilder(tokenizer, processor, tokenizer.chat_template, min_pixels=32 * 1024, max_pixels=64 * 1024)
    return builder, tokenizer
