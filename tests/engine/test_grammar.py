"""Grammar-constrained decoding: whatever the model prefers, a constrained row can only spell valid JSON."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from tests.support.images import chart
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.engine.transformers import TransformersEngine
from vlserve.engine.transformers.checkpoint import load_checkpoint
from vlserve.engine.transformers.grammar import GrammarCache, RowGrammar, mask_rows
from vlserve.errors import ClientError
from vlserve.settings import Settings
from vlserve.structured import OutputFormat, validate_output

# Finite by construction (enums, booleans, bounded arrays), so even random weights must finish the answer.
CHART = OutputFormat.of(
    "chart",
    {
        "type": "object",
        "properties": {
            "kind": {"enum": ["bar", "line"]},
            "labelled": {"type": "boolean"},
            "years": {"type": "array", "items": {"enum": ["2021", "2022", "2023"]}, "minItems": 1, "maxItems": 3},
        },
        "required": ["kind", "labelled", "years"],
        "additionalProperties": False,
    },
)
FLAG = OutputFormat.of("flag", {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})


@pytest.fixture(scope="module")
def checkpoint(demo_model):
    return load_checkpoint(demo_model)


@pytest.fixture(scope="module")
def grammars(checkpoint):
    return GrammarCache(
        checkpoint.tokenizer, checkpoint.model.config.get_text_config().vocab_size, checkpoint.eos_token_ids
    )


def decode_random(grammars, checkpoint, formats, steps=80, seed=0):
    """Greedy decoding over random logits, each row under its own format (or none)."""
    generator = torch.Generator().manual_seed(seed)
    matchers = [None if f is None else RowGrammar(grammars.compile(f)) for f in formats]
    eos = set(checkpoint.eos_token_ids)
    rows = [[] for _ in formats]
    untouched = []
    for _ in range(steps):
        scores = torch.randn((len(formats), grammars.vocab_size), generator=generator)
        before = scores.clone()
        mask_rows(scores, matchers, grammars.vocab_size)
        untouched.append(all(torch.equal(scores[r], before[r]) for r, f in enumerate(formats) if f is None))
        nxt = scores.argmax(-1)
        for r, token in enumerate(nxt.tolist()):
            if not rows[r] or rows[r][-1] not in eos:
                rows[r].append(token)
                if matchers[r] is not None:
                    matchers[r].accept(token)
    texts = [checkpoint.tokenizer.decode([t for t in row if t not in eos]) for row in rows]
    ended = [bool(row) and row[-1] in eos for row in rows]
    return texts, ended, all(untouched)


def test_constrained_rows_spell_schema_valid_json_and_free_rows_are_left_alone(grammars, checkpoint):
    for seed in range(3):
        texts, ended, untouched = decode_random(grammars, checkpoint, [CHART, None, FLAG], seed=seed)
        assert ended[0] and ended[2], texts
        assert validate_output(texts[0], CHART) is None, texts[0]
        assert validate_output(texts[2], FLAG) is None, texts[2]
        assert json.loads(texts[0])["kind"] in ("bar", "line")
        assert untouched, "a row without a format must see the model's own scores"


def test_the_answer_is_compact_json_with_the_trained_separators(grammars, checkpoint):
    texts, _, _ = decode_random(grammars, checkpoint, [CHART], seed=5)
    assert texts[0] == json.dumps(json.loads(texts[0]), separators=(", ", ": "), ensure_ascii=False)


def test_a_schema_the_grammar_cannot_express_is_a_client_error(grammars):
    with pytest.raises(ClientError) as caught:
        grammars.compile(OutputFormat.of("odd", {"type": "object", "properties": {"a": {"type": "nonsense"}}}))
    assert caught.value.param == "response_format.json_schema.schema"
    assert "nonsense" in caught.value.message and "/" not in caught.value.message


def test_engine_batches_constrained_and_free_requests_together(demo_model):
    async def main():
        settings = Settings(model=demo_model, min_pixels=64 * 32 * 32, max_pixels=64 * 32 * 32, batch_wait_ms=200)
        engine = TransformersEngine(settings)
        await engine.start()
        try:
            turns = [ChatTurn("user", ({"type": "image"}, {"type": "text", "text": "describe the chart"}))]
            prompt = await engine.prepare(EngineRequest.chat(turns, [chart(7)]))
            await engine.check_output(CHART)

            async def answer(params):
                return [d async for d in engine.generate(prompt, params)]

            constrained, free = await asyncio.gather(
                answer(SamplingParams(max_tokens=60, temperature=0, output=CHART)),
                answer(SamplingParams(max_tokens=12, temperature=0)),
            )
            assert engine.scheduler.batch_sizes[-1] == 2
            assert constrained[-1].finish_reason == "stop"
            assert validate_output("".join(d.text for d in constrained), CHART) is None
            alone = await answer(SamplingParams(max_tokens=12, temperature=0))
            assert "".join(d.text for d in free) == "".join(d.text for d in alone)  # the mask left it alone
        finally:
            await engine.close()

    asyncio.run(main())
