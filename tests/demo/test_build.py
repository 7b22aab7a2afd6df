"""The demo checkpoint builder: offline loading, schema, tokenizer, template, generate, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vlserve.demo import CHAT_TEMPLATE_PATH, build_random_model, train_tokenizer
from vlserve.demo.build import MANIFEST_NAME, REQUIRED_FILES, is_complete_checkpoint
from vlserve.demo.tokenizer import SPECIAL_TOKENS

IMAGE_PAD = "<|image_pad|>"


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, _offline: None) -> Path:
    return build_random_model(tmp_path_factory.mktemp("demo") / "model", seed=0)


@pytest.fixture(scope="module")
def loaded(ckpt: Path) -> dict[str, Any]:
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    return {
        "model": AutoModelForImageTextToText.from_pretrained(ckpt, local_files_only=True).eval(),
        "tokenizer": AutoTokenizer.from_pretrained(ckpt, local_files_only=True),
        "image_processor": AutoImageProcessor.from_pretrained(ckpt, local_files_only=True),
    }


def test_directory_is_complete_small_and_described(ckpt: Path) -> None:
    assert is_complete_checkpoint(ckpt)
    for name in REQUIRED_FILES:
        assert (ckpt / name).is_file(), name
    size = sum(f.stat().st_size for f in ckpt.iterdir())
    assert size < 8 * 1024 * 1024
    manifest = json.loads((ckpt / MANIFEST_NAME).read_text())
    assert manifest["kind"] == "random" and manifest["seed"] == 0
    params = manifest["parameters"]
    assert 0 < params["active_per_token"] < params["total"]
    assert not [p.name for p in ckpt.parent.iterdir() if p.name.startswith(".")]  # no staging left
    assert (ckpt / "chat_template.jinja").read_text() == CHAT_TEMPLATE_PATH.read_text()
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in [ckpt, *ckpt.iterdir()])  # group/other read
    tokenizer_config = json.loads((ckpt / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_loads_as_qwen3_vl_moe_with_moe_layers_and_deepstack(loaded: dict[str, Any]) -> None:
    from transformers import Qwen3VLMoeForConditionalGeneration
    from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import Qwen3VLMoeTextSparseMoeBlock

    model, tok = loaded["model"], loaded["tokenizer"]
    assert isinstance(model, Qwen3VLMoeForConditionalGeneration)
    assert model.dtype == torch.float32
    cfg, text, vision = model.config, model.config.text_config, model.config.vision_config
    assert cfg.model_type == "qwen3_vl_moe" and cfg.tie_word_embeddings is False
    layers = model.model.language_model.layers
    assert all(isinstance(layer.mlp, Qwen3VLMoeTextSparseMoeBlock) for layer in layers)
    assert text.num_experts > text.num_experts_per_tok >= 2
    assert text.rope_parameters["mrope_interleaved"] is True
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2
    indexes = list(vision.deepstack_visual_indexes)
    assert indexes and all(0 <= i < vision.depth for i in indexes)
    assert len(model.model.visual.deepstack_merger_list) == len(indexes)
    assert int(vision.num_position_embeddings**0.5) ** 2 == vision.num_position_embeddings
    assert vision.out_hidden_size == text.hidden_size
    assert text.vocab_size == len(tok)
    for field, token in (
        ("image_token_id", IMAGE_PAD),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        assert getattr(cfg, field) == tok.convert_tokens_to_ids(token), field
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()


def test_config_json_also_has_the_released_checkpoints_key_spellings(ckpt: Path) -> None:
    text = json.loads((ckpt / "config.json").read_text())["text_config"]
    assert text["num_experts"] == text["num_local_experts"]
    assert text["rope_scaling"]["mrope_section"] == text["rope_parameters"]["mrope_section"]
    assert text["rope_theta"] == text["rope_parameters"]["rope_theta"]


def test_generation_config_stops_at_im_end(ckpt: Path, loaded: dict[str, Any]) -> None:
    tok, gen = loaded["tokenizer"], loaded["model"].generation_config
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert eos[0] == tok.convert_tokens_to_ids("<|im_end|>")
    assert gen.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert gen.do_sample is False


def test_image_processor_is_the_pil_qwen2vl_one_and_counts_tokens(loaded: dict[str, Any]) -> None:
    ip = loaded["image_processor"]
    assert type(ip).__name__.startswith("Qwen2VLImageProcessor")
    assert ip.patch_size == 16 and ip.merge_size == 2 and ip.temporal_patch_size == 2
    out = ip(images=[Image.new("RGB", (100, 70), (200, 30, 30))], return_tensors="pt")
    grid = out["image_grid_thw"]
    assert grid.shape == (1, 3)
    assert out["pixel_values"].shape == (int(grid.prod()), 3 * 2 * 16 * 16)
    n_tokens = int(grid.prod()) // 4
    assert 64 <= n_tokens <= 1280  # the configured visual-token budget


def test_chat_template_renders_image_and_text_parts(loaded: dict[str, Any]) -> None:
    tok = loaded["tokenizer"]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What does it show?"}]}]
    got = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert got == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What does it show?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_template_system_strings_urls_videos_and_turns(loaded: dict[str, Any]) -> None:
    tok = loaded["tokenizer"]
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"image": "file:///tmp/a.png"},  # type-less parts are recognised by their key
                {"type": "video", "video": "clip.mp4"},
                {"type": "text", "text": "比较"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": "again"},
    ]
    got = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert got == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|video_pad|><|vision_end|>比较<|im_end|>\n"
        "<|im_start|>assistant\nok<|im_end|>\n"
        "<|im_start|>user\nagain<|im_end|>\n"
    )
    # No default system prompt.
    plain = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert plain == "<|im_start|>user\nhi<|im_end|>\n"


@pytest.mark.parametrize(
    "text",
    [
        "柱状图显示2021年净利润为356.7万元，增长率12.5%。",
        "Emoji 😀🎉👍🏽 and ✓ symbols, Ünïcödé, العربية, 日本語のテキスト",
        '  leading spaces, tabs\tand\nnew lines\r\n{"year": 2024, "value": [1, 2.5, null]}  ',
    ],
)
def test_tokenizer_round_trips_any_unicode(loaded: dict[str, Any], text: str) -> None:
    tok = loaded["tokenizer"]
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert tok.unk_token_id is None


def test_tokenizer_splits_digits_and_places_special_tokens(loaded: dict[str, Any]) -> None:
    tok = loaded["tokenizer"]
    assert tok.convert_ids_to_tokens(tok.encode("2024", add_special_tokens=False)) == ["2", "0", "2", "4"]
    first = tok.convert_tokens_to_ids(SPECIAL_TOKENS[0])
    assert first == tok.backend_tokenizer.get_vocab_size(with_added_tokens=False) == 2048
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(first, first + len(SPECIAL_TOKENS)))
    assert len(tok) == first + len(SPECIAL_TOKENS)
    ids = tok.encode("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>", add_special_tokens=False)
    assert tok.convert_tokens_to_ids(IMAGE_PAD) in ids and len(ids) == 6


def test_greedy_generate_with_one_image(loaded: dict[str, Any]) -> None:
    model, tok, ip = loaded["model"], loaded["tokenizer"], loaded["image_processor"]
    image = Image.effect_noise((100, 70), 40).convert("RGB")
    vision = ip(images=[image], return_tensors="pt")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    n_tokens = int(vision["image_grid_thw"][0].prod()) // ip.merge_size**2
    prompt = prompt.replace(IMAGE_PAD, IMAGE_PAD * n_tokens, 1)
    enc = tok(prompt, return_tensors="pt")
    image_id = tok.convert_tokens_to_ids(IMAGE_PAD)
    mm_token_type_ids = (enc["input_ids"] == image_id).to(torch.int32)
    assert int(mm_token_type_ids.sum()) == n_tokens
    with torch.inference_mode():
        out = model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            mm_token_type_ids=mm_token_type_ids,
            pixel_values=vision["pixel_values"],
            image_grid_thw=vision["image_grid_thw"],
            max_new_tokens=8,
            do_sample=False,
        )
    new = out[0, enc["input_ids"].shape[1] :]
    assert 1 <= new.numel() <= 8
    assert all(0 <= int(t) < len(tok) for t in new)


def test_same_seed_gives_identical_bytes_and_empty_dir_is_filled(ckpt: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()  # an existing empty directory is filled, not refused
    assert build_random_model(again, seed=0) == again.absolute()
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert (again / name).read_bytes() == (ckpt / name).read_bytes(), name


def test_other_seed_gives_other_weights(ckpt: Path, tmp_path: Path) -> None:
    other = build_random_model(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (ckpt / "model.safetensors").read_bytes()


def test_second_call_without_overwrite_is_a_no_op(ckpt: Path) -> None:
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ckpt.iterdir()}
    assert build_random_model(ckpt, seed=0) == ckpt
    assert build_random_model(ckpt, seed=7) == ckpt  # a complete checkpoint is kept as it is
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ckpt.iterdir()}
    assert after == before


def test_overwrite_replaces_and_foreign_dirs_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_random_model(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    build_random_model(foreign, overwrite=True)
    assert is_complete_checkpoint(foreign) and not (foreign / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign"]


def test_train_tokenizer_is_deterministic_in_process() -> None:
    a = train_tokenizer(seed=3, vocab_size=600).backend_tokenizer.to_str()
    b = train_tokenizer(seed=3, vocab_size=600).backend_tokenizer.to_str()
    assert a == b


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, vlserve.demo as d; d.CHAT_TEMPLATE_PATH.read_text(); print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
