"""The demo tokenizer: a small byte-level BPE trained by the project, with Qwen's special tokens.

Byte-level (every byte is in the initial alphabet), so any unicode text round-trips, Chinese and
emoji included; digits are split one by one before BPE, as in Qwen, so numbers read as digit
sequences. No normalizer, so decode(encode(text)) == text byte for byte.
"""

from __future__ import annotations

import itertools
import json

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from vlserve.demo import CHAT_TEMPLATE_PATH
from vlserve.demo.corpus import corpus_lines

__all__ = [
    "CHAT_TEMPLATE_PATH",
    "EOS_TOKEN",
    "IMAGE_PAD_TOKEN",
    "PAD_TOKEN",
    "QWEN_BPE_SIZE",
    "QWEN_EXTRA_TOKENS",
    "SPECIAL_TOKENS",
    "VIDEO_PAD_TOKEN",
    "VISION_END_TOKEN",
    "VISION_START_TOKEN",
    "train_qwen_sized_tokenizer",
    "train_tokenizer",
]


PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"
IMAGE_PAD_TOKEN = "<|image_pad|>"
VIDEO_PAD_TOKEN = "<|video_pad|>"

# Qwen's order; they take the ids right after the BPE vocabulary, in this order.
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    "<|im_start|>",
    EOS_TOKEN,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    VISION_START_TOKEN,
    VISION_END_TOKEN,
    "<|vision_pad|>",
    IMAGE_PAD_TOKEN,
    VIDEO_PAD_TOKEN,
)

# Qwen2/Qwen3's byte-level BPE vocabulary has 151,643 entries, so <|endoftext|> is id 151643 and
# <|image_pad|> 151655, the ids the released Qwen3-VL config.json names.
QWEN_BPE_SIZE = 151_643

# The added tokens that follow the 14 special ones in Qwen3's tokenizer (ids 151657-151668), not special:
# they stay in decoded text, where tool-call and reasoning parsers look for them.
QWEN_EXTRA_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)

# Longest BPE token, in byte-level characters (a CJK character is 3): keeps the templated
# corpus from fusing whole Chinese phrases into single tokens.
_MAX_TOKEN_LENGTH = 12


def _train_bpe(seed: int, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        max_token_length=_MAX_TOKEN_LENGTH,
    )
    tok.train_from_iterator(list(corpus_lines(seed)), trainer=trainer)
    return tok


def _pad_vocabulary(tok: Tokenizer, size: int) -> Tokenizer:
    """The same BPE with its vocabulary filled up to `size` entries by tokens no merge produces.

    The fillers are every two-symbol, then three-symbol, string of the byte-level alphabet not
    already in the vocabulary, in a fixed order. Encoding never yields them; decoding gives their
    bytes, so a model that emits one still produces (meaningless) text.
    """
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    fillers = ("".join(chars) for length in (2, 3) for chars in itertools.product(alphabet, repeat=length))
    for token in fillers:
        if len(vocab) >= size:
            break
        vocab.setdefault(token, len(vocab))
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


def _add_special_tokens(tok: Tokenizer) -> Tokenizer:
    bpe_size = tok.get_vocab_size(with_added_tokens=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    for offset, token in enumerate(SPECIAL_TOKENS):
        got = tok.token_to_id(token)
        if got != bpe_size + offset:  # pragma: no cover - a tokenizers behaviour change
            raise RuntimeError(f"special token {token} got id {got}, expected {bpe_size + offset}")
    return tok


def _build_backend(seed: int, vocab_size: int) -> Tokenizer:
    return _add_special_tokens(_train_bpe(seed, vocab_size))


def _wrap(backend: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    return tokenizer


def train_tokenizer(seed: int = 0, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train the demo tokenizer deterministically (same seed -> byte-identical tokenizer.json).

    `vocab_size` is the size of the BPE vocabulary (256 byte symbols plus merges); the 14 special
    tokens follow it, so `len(tokenizer) == vocab_size + 14` when the corpus supports that many
    merges (it does for the defaults).
    """
    if vocab_size < 256 + 1:
        raise ValueError("vocab_size must exceed the 256 byte-level symbols")
    return _wrap(_build_backend(seed, vocab_size), model_max_length=4096)


def train_qwen_sized_tokenizer(seed: int = 0, model_max_length: int = 262_144) -> PreTrainedTokenizerFast:
    """The demo tokenizer laid out like Qwen3's: 151,669 tokens, every special token at Qwen3's id.

    Its 2,048 trained BPE tokens are padded to QWEN_BPE_SIZE, then come the 14 special tokens and
    QWEN_EXTRA_TOKENS. A checkpoint with the released Qwen3-VL config (151,936 embedding rows, image
    pad 151655) then loads and serves unchanged; its texts split into more tokens than Qwen's own
    tokenizer would make of them (2,048 merges instead of 151,387).
    """
    backend = _add_special_tokens(_pad_vocabulary(_train_bpe(seed, 2048), QWEN_BPE_SIZE))
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_EXTRA_TOKENS])
    return _wrap(backend, model_max_length=model_max_length)
