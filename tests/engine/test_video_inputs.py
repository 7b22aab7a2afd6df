"""A video on the transformers engine: its frames as the model's video input, placed as Qwen3-VL places them.

Patches are compared with the image processor's (an image is a clip of two identical frames to these
models), shapes with the demo model's vision config; the demo model answers a request with a video.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from PIL import Image

from tests.engine.test_architectures import build
from tests.support.images import chart
from vlserve.engine.base import ChatTurn, EngineRequest, MediaItem, SamplingParams
from vlserve.engine.transformers import TransformersEngine
from vlserve.engine.transformers.checkpoint import load_checkpoint
from vlserve.engine.transformers.prompting import PromptBuilder
from vlserve.engine.transformers.video_inputs import VideoGeometry, process_video
from vlserve.settings import Settings


def video(frames: list[Image.Image], fps: float = 2.0) -> MediaItem:
    times = tuple(i / fps for i in range(len(frames)))
    return MediaItem(frames[0], kind="video", frames=tuple(frames), timestamps=times, fps=fps, source=b"\0")


def clip(seed: int, count: int, size: tuple[int, int] = (128, 96)) -> MediaItem:
    return video([chart(seed * 100 + i, size) for i in range(count)])


def asked(question: str, *kinds: str) -> ChatTurn:
    return ChatTurn("user", (*({"type": kind} for kind in kinds), {"type": "text", "text": question}))


@pytest.fixture(scope="module")
def checkpoint(demo_model):
    return load_checkpoint(demo_model)


@pytest.fixture(scope="module")
def builder(checkpoint):
    return PromptBuilder(
        checkpoint.tokenizer, checkpoint.image_processor, checkpoint.chat_template,
        min_pixels=16 * 32 * 32, max_pixels=256 * 32 * 32, model_type=checkpoint.model_type,
    )  # fmt: skip


def test_two_identical_frames_give_the_image_processors_patches(checkpoint):
    frame = chart(3, (320, 256))  # multiples of 32 inside the budget: the image processor does not resize it
    processed = checkpoint.image_processor(images=[frame], return_tensors="pt")
    got = process_video(video([frame, frame]), VideoGeometry.of(checkpoint.image_processor))
    assert got.grid_thw == tuple(int(n) for n in processed["image_grid_thw"][0])
    assert torch.allclose(got.pixel_values, processed["pixel_values"].float(), atol=1e-6)


def test_shapes_follow_the_vision_config(demo_model, checkpoint):
    vision = json.loads((demo_model / "config.json").read_text())["vision_config"]
    patch, temporal = vision["patch_size"], vision["temporal_patch_size"]
    got = process_video(clip(1, 5, (128, 96)), VideoGeometry.of(checkpoint.image_processor))
    assert got.grid_thw == (3, 96 // patch, 128 // patch)  # five frames: the last repeated into a third group
    assert got.pixel_values.shape == (3 * (96 // patch) * (128 // patch), vision["in_channels"] * temporal * patch**2)
    assert got.group_seconds == (0.25, 1.25, 2.0)  # each group at the mean of its frames' times


def test_a_video_becomes_timestamped_groups_of_frame_tokens(builder, checkpoint):
    prompt = builder.build_request(EngineRequest((asked("what happens?", "video"),), (clip(1, 4),)))
    text = checkpoint.tokenizer.decode(prompt.input_ids)
    assert "<0.2 seconds><|vision_start|>" in text and "<1.2 seconds><|vision_start|>" in text
    assert text.count("<|vision_start|>") == 2  # one per temporal group of two frames
    per_group = (96 // 32) * (128 // 32)
    assert prompt.mm_token_type_ids.count(2) == 2 * per_group == prompt.image_tokens
    assert tuple(prompt.image_inputs["video_grid_thw"][0].tolist()) == (2, 96 // 16, 128 // 16)


def test_images_and_videos_keep_their_order(builder, checkpoint):
    request = EngineRequest(
        (asked("compare", "image", "video", "image"),),
        (MediaItem(chart(1, (64, 64))), clip(2, 2), MediaItem(chart(2, (64, 64)))),
    )
    prompt = builder.build_request(request)
    kinds = [
        k for i, k in enumerate(prompt.mm_token_type_ids) if k and (i == 0 or prompt.mm_token_type_ids[i - 1] != k)
    ]
    assert kinds == [1, 2, 1]
    assert prompt.image_inputs["image_grid_thw"].shape[0] == 2 and prompt.image_inputs["video_grid_thw"].shape[0] == 1


def test_several_images_are_labelled_and_one_is_not(builder, checkpoint):
    two = builder.build_request(
        EngineRequest(
            (asked("which is taller?", "image", "image"),), MediaItem.images([chart(1, (64, 64)), chart(2, (64, 64))])
        )
    )
    text = checkpoint.tokenizer.decode(two.input_ids)
    assert "Picture 1: <|vision_start|>" in text and "Picture 2: <|vision_start|>" in text
    one = builder.build_request(EngineRequest((asked("what is it?", "image"),), MediaItem.images([chart(1, (64, 64))])))
    assert "Picture" not in checkpoint.tokenizer.decode(one.input_ids)
    mixed = builder.build_request(
        EngineRequest((asked("same chart?", "image", "video"),), (MediaItem(chart(1, (64, 64))), clip(1, 2)))
    )
    mixed_text = checkpoint.tokenizer.decode(mixed.input_ids)
    assert "Picture 1: <|vision_start|>" in mixed_text and "Video 1: <0.2 seconds>" in mixed_text


def test_labels_count_across_the_conversation_and_the_client_may_turn_them_off(builder, checkpoint):
    turns = (
        asked("first", "image"),
        ChatTurn("assistant", ({"type": "text", "text": "a chart"},)),
        asked("and this?", "image"),
    )
    media = MediaItem.images([chart(1, (64, 64)), chart(2, (64, 64))])
    text = checkpoint.tokenizer.decode(builder.build_request(EngineRequest(turns, media)).input_ids)
    assert text.index("Picture 1:") < text.index("a chart") < text.index("Picture 2:")
    off = EngineRequest(turns, media, chat_template_kwargs={"add_vision_id": False})
    assert "Picture" not in checkpoint.tokenizer.decode(builder.build_request(off).input_ids)


def test_the_demo_model_answers_about_a_video(demo_model):
    async def main():
        engine = TransformersEngine(
            Settings(model=demo_model, warmup=False, min_pixels=16 * 32 * 32, max_pixels=256 * 32 * 32)
        )
        await engine.start()
        try:
            text_only = await engine.prepare(EngineRequest((asked("what happens?"),)))
            short = await engine.prepare(EngineRequest((asked("what happens?", "video"),), (clip(1, 4),)))
            other = await engine.prepare(EngineRequest((asked("what happens?", "video"),), (clip(2, 6),)))
            params = SamplingParams(max_tokens=4, temperature=0.0)

            async def collect(prompt):
                return [d async for d in engine.generate(prompt, params)]

            answers = await asyncio.gather(collect(short), collect(other))  # in one batch
            return text_only, short, other, answers
        finally:
            await engine.close()

    text_only, short, other, answers = asyncio.run(main())
    assert short.input_ids != other.input_ids  # six frames: three timestamped groups, not two
    for prompt, deltas in zip((short, other), answers, strict=True):
        usage = deltas[-1].usage
        assert deltas[-1].finish_reason in ("stop", "length")
        assert usage.prompt_tokens == prompt.num_tokens >= text_only.num_tokens + prompt.image_tokens
        assert usage.image_tokens == prompt.image_tokens > 0


def test_qwen2_5_vl_takes_a_video_without_timestamps(demo_model, tmp_path):
    checkpoint = build("qwen2_5_vl", demo_model, tmp_path / "qwen2_5_vl")

    async def main():
        engine = TransformersEngine(
            Settings(model=checkpoint, warmup=False, min_pixels=16 * 32 * 32, max_pixels=128 * 32 * 32)
        )
        await engine.start()
        try:
            item = video([Image.new("RGB", (112, 56), c) for c in ("red", "blue", "green", "white")], fps=1.0)
            prompt = await engine.prepare(EngineRequest((asked("what colours?", "video"),), (item,)))
            deltas = [d async for d in engine.generate(prompt, SamplingParams(max_tokens=3))]
            return prompt, deltas
        finally:
            await engine.close()

    prompt, deltas = asyncio.run(main())
    assert prompt.mm_token_type_ids.count(2) == 2 * (112 // 28) * (56 // 28)
    assert prompt.image_inputs["second_per_grid_ts"].tolist() == [2.0]  # two frames per group at 1 fps
    assert deltas[-1].usage.prompt_tokens == prompt.num_tokens
