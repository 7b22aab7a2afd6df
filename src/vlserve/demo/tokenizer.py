"""The demo tokenizer: a small byte-level BPE trained by the project, with Qwen's special tokens.

Byte-level (every byte is in the initial alphabet), so any unicode text round-trips, Chinese and
emoji included; digits are split one by one before BPE, as in Qwen, so numbers read as digit
sequences. No normalizer, so decode(encode(text)) == text byte for byte.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from vlserve.demo import CHAT_TEMPLATE_PATH
from vlserve.demo.corpus import corpus_lines

__all__ = [
    "CHAT_TEMPLATE_PATH",
    "EOS_TOKEN",
    "IMAGE_PAD_TOKEN",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "VIDEO_PAD_TOKEN",
    "VISION_END_TOKEN",
    "VISION_START_TOKEN",
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

# Longest BPE token, in byte-level characters (a CJK character is 3): keeps the templated
# corpus from fusing whole Chinese phrases into single tokens.
_MAX_TOKEN_LENGTH = 12


def _build_backend(seed: int, vocab_size: int) -> Tokenizer:
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
    bpe_size = tok.get_vocab_size(with_added_tokens=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    for offset, token in enumerate(SPECIAL_TOKENS):
        got = tok.token_to_id(token)
        if got != bpe_size + offset:  # pragma: no cover - a tokenizers behaviour change
            raise RuntimeError(f"special token {token} got id {got}, expected {bpe_size + offset}")
    return tok


def train_tokenizer(seed: int = 0, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train the demo tokenizer deterministically (same seed -> byte-identical tokenizer.json).

    `vocab_size` is the size of the BPE vocabulary (256 byte symbols plus merges); the 14 special
    tokens follow it, so `len(tokenizer) == vocab_size + 14` when the corpus supports that many
    merges (it does for the defaults).
    """
    if vocab_size < 256 + 1:
        raise ValueError("vocab_size must exceed the 256 byte-level symbols")
    backend = _build_backend(seed, vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    return tokenizer
