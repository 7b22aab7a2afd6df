"""Token logprobs: exact token bytes, raw log-probabilities captured before any processing, and on the
demo checkpoint one logprob per streamed token, equal to a plain forward pass's log-softmax."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers.convert_slow_tokenizer import bytes_to_unicode

from tests.engine.running import RunningEngine, forward_logits, token_ids
from vlserve.engine.base import GREEDY
from vlserve.engine.transformers.checkpoint import load_checkpoint
from vlserve.engine.transformers.logprobs import LogprobCapture, TokenPieces, byte_decoder


@pytest.fixture(scope="module")
def checkpoint(demo_model):
    return load_checkpoint(demo_model)


@pytest.fixture(scope="module")
def pieces(checkpoint):
    return TokenPieces(checkpoint.tokenizer)


def test_the_byte_decoder_is_gpt2s_alphabet_reversed():
    assert byte_decoder() == {char: byte for byte, char in bytes_to_unicode().items()}


def test_token_bytes_join_back_into_the_exact_utf8_text(checkpoint, pieces):
    text = "价格 rose 12% 😀 <|im_end|>"
    ids = checkpoint.tokenizer.encode(text, add_special_tokens=False)
    assert b"".join(bytes(pieces(i)[1]) for i in ids) == text.encode()
    emoji_parts = [pieces(i) for i in checkpoint.tokenizer.encode("😀", add_special_tokens=False)]
    assert len(emoji_parts) > 1 and all(t == "\ufffd" for t, _ in emoji_parts)  # parts of one character
    assert pieces(checkpoint.eos_token_ids[0]) == ("<|im_end|>", tuple(b"<|im_end|>"))
    assert pieces(10**6) == ("", ())  # past the vocabulary: nothing, not an error


def test_capture_keeps_raw_logprobs_of_asking_rows_only(pieces):
    params = [GREEDY, replace(GREEDY, logprobs=True, top_logprobs=2), replace(GREEDY, logprobs=True)]
    capture = LogprobCapture(params, pieces)
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    raw = scores.log_softmax(-1)
    capture.capture(scores)
    scores[:] = float("-inf")  # what later stages do in place must not change what was captured
    taken = capture.take([3, 2, 1], [0, 1, 2])
    assert set(taken) == {1, 2}
    assert taken[1].logprob == pytest.approx(raw[1, 2].item())
    assert [t.logprob for t in taken[1].top] == pytest.approx([raw[1, 0].item(), raw[1, 2].item()])
    assert [t.bytes for t in taken[1].top] == [pieces(0)[1], pieces(2)[1]]
    assert taken[2].top == () and taken[2].logprob == pytest.approx(-torch.log(torch.tensor(4.0)).item())
    assert set(capture.take([3, 2, 1], [0, 2])) == {2}  # rows that have ended are skipped


@pytest.fixture(scope="module")
def running(demo_model):
    engine = RunningEngine(demo_model, max_batch_size=4, batch_wait_ms=100)
    yield engine
    engine.close()


def test_logprobs_stream_one_per_token_and_equal_a_plain_forward_pass(running, checkpoint, pieces):
    prompt, other = running.prompt("What are the values?"), running.prompt("请分析这张图")
    asks = replace(GREEDY, max_tokens=10, logprobs=True, top_logprobs=5)
    penalised = replace(GREEDY, max_tokens=10, logprobs=True, frequency_penalty=2.0)
    answer, plain, biased = running.answers(
        [(prompt, asks), (other, replace(GREEDY, max_tokens=10)), (prompt, penalised)]
    )
    assert all(d.logprobs == () for d in plain)  # a neighbour that did not ask gets none
    for deltas, params in ((answer, asks), (biased, penalised)):
        assert all(len(d.logprobs) == len(d.token_ids) for d in deltas)
        ids = token_ids(deltas)
        logprobs = [lp for d in deltas for lp in d.logprobs]
        assert len(logprobs) == len(ids) == deltas[-1].usage.completion_tokens
        raw = forward_logits(checkpoint.model, prompt, ids).log_softmax(-1)
        for step, (token, lp) in enumerate(zip(ids, logprobs, strict=True)):
            assert lp.logprob == pytest.approx(raw[step, token].item(), abs=1e-4)  # raw: before any penalty
            assert (lp.token, lp.bytes) == pieces(token)
            assert len(lp.top) == params.top_logprobs
            values = [t.logprob for t in lp.top]
            assert values == sorted(values, reverse=True)
            best = raw[step].topk(params.top_logprobs)
            assert values == pytest.approx(best.values.tolist(), abs=1e-4)
            if lp.top:  # greedy without penalties: the chosen token is the most likely one
                assert lp.top[0].bytes == lp.bytes and lp.top[0].logprob == lp.logprob
        if params.frequency_penalty:  # the penalty chose a less likely token somewhere, reported as it is
            assert any(raw[step].argmax() != token for step, token in enumerate(ids))
