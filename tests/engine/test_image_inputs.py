"""Images as the model's input without transformers' processor: the processor's values for the same resized
image (within 1e-5), its grid, every colour mode it converts, a JPEG decoded at a DCT scale, several images
of one request at once; a processor configured otherwise keeps transformers' path."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tests.support.images import chart, photo
from vlserve.engine.base import ChatTurn
from vlserve.engine.transformers.image_inputs import ImageGeometry, image_inputs, processor_rgb
from vlserve.engine.transformers.prompting import PromptBuilder
from vlserve.media.images import ImageLimits, decode_image
from vlserve.media.resample import resize_image
from vlserve.media.resize import ImageBudget

BUDGET = ImageBudget(64 * 1024, 1280 * 1024, 32)
SIZE = {"shortest_edge": BUDGET.min_pixels, "longest_edge": BUDGET.max_pixels}
LIMITS = ImageLimits(max_bytes=10**8, max_pixels=10**8)


@pytest.fixture(scope="module")
def processor(demo_model):
    return AutoImageProcessor.from_pretrained(demo_model, local_files_only=True)


def theirs(processor, images: list[Image.Image], budget: ImageBudget = BUDGET) -> dict[str, np.ndarray]:
    size = {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}
    return processor(images=images, size=size, return_tensors="np")


def assert_same(ours: dict[str, torch.Tensor], reference: dict[str, np.ndarray]) -> None:
    assert ours["pixel_values"].dtype == torch.float32 and ours["image_grid_thw"].dtype == torch.long
    assert np.array_equal(ours["image_grid_thw"].numpy(), reference["image_grid_thw"])
    assert ours["pixel_values"].shape == reference["pixel_values"].shape
    assert np.abs(ours["pixel_values"].numpy() - reference["pixel_values"]).max() <= 1e-5


def test_the_demo_processor_is_understood(processor):
    geometry = ImageGeometry.of(processor)
    assert geometry is not None and (geometry.patch_size, geometry.merge_size, geometry.temporal_patch_size) == (
        16,
        2,
        2,
    )
    assert geometry.factor == 32 and geometry.row_size == 3 * 2 * 16 * 16


@pytest.mark.parametrize("size", [(1600, 1200), (1200, 1600), (123, 457), (2000, 90), (50, 50), (640, 480), (4000, 33)])
def test_the_processors_values_for_the_same_resized_image(processor, size):
    image = photo(size, seed=size[0])
    resized = resize_image(image, BUDGET.size_for(*size), backend="torch")  # what the engine resizes to
    assert_same(image_inputs([image], BUDGET, ImageGeometry.of(processor)), theirs(processor, [resized]))


@pytest.mark.parametrize("size", [(1000, 700), (123, 457), (300, 3000)])
def test_resized_with_pillow_the_values_are_the_processors_own(processor, size):
    """The only step that differs from the processor's is torch's resize; with Pillow's, nothing differs."""
    image = photo(size, seed=7)
    fitted = BUDGET.fit(image)  # Pillow, as the processor
    assert_same(image_inputs([fitted], BUDGET, ImageGeometry.of(processor)), theirs(processor, [image]))


def with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = np.zeros((image.height, image.width), np.uint8)
    alpha[:, image.width // 3 :] = 128
    alpha[:, 2 * image.width // 3 :] = 255
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def palette_with_transparency(image: Image.Image) -> Image.Image:
    paletted = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    paletted.info["transparency"] = 0
    return paletted


MODES = {
    "RGB": lambda image: image,
    "RGBA": with_alpha,
    "LA": lambda image: with_alpha(image).convert("LA"),
    "L": lambda image: image.convert("L"),
    "P": lambda image: image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64),
    "P+transparency": palette_with_transparency,
    "CMYK": lambda image: image.convert("CMYK"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(640, 480), (1000, 700)])
def test_every_colour_mode_converts_as_the_processor_converts_it(processor, mode, size):
    image = MODES[mode](chart(5, size))
    ours = image_inputs([image], BUDGET, ImageGeometry.of(processor))
    if BUDGET.size_for(*size) == size:  # nothing resized on either side: the processor converts the original
        assert_same(ours, theirs(processor, [image]))
    else:
        resized = resize_image(processor_rgb(image), BUDGET.size_for(*size), backend="torch")
        assert_same(ours, theirs(processor, [resized]))


def test_a_large_jpeg_decoded_at_a_dct_scale_keeps_its_orientation_and_gets_the_right_size(processor):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 3000x4000 as seen
    picture = photo((4000, 3000), seed=1)
    picture.paste((255, 0, 0), (0, 0, 400, 300))  # a red corner, top left as stored
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif.tobytes(), quality=90)
    data = buffer.getvalue()
    loaded = decode_image(data, LIMITS, param="x", target_pixels=BUDGET.max_pixels)
    assert loaded.image.size == (1500, 2000)  # decoded at 1/2 scale, then turned upright
    ours = image_inputs([loaded.image], BUDGET, ImageGeometry.of(processor))
    width, height = BUDGET.size_for(3000, 4000)
    assert ours["image_grid_thw"].tolist() == [[1, height // 16, width // 16]]
    resized = resize_image(loaded.image, (width, height), backend="torch")
    red, green, _ = resized.getpixel((width - 10, 10))  # rotated clockwise: the corner is now top right
    assert red > 200 and green < 60
    assert_same(ours, theirs(processor, [resized]))


def test_several_images_at_once_equal_each_alone_in_order(processor):
    geometry = ImageGeometry.of(processor)
    images = [photo((1600, 1200), 1), chart(2, (300, 200)), photo((700, 1500), 3), chart(4, (640, 480))]
    with ThreadPoolExecutor(2) as pool:
        together = image_inputs(images, BUDGET, geometry, pool=pool)
    alone = [image_inputs([image], BUDGET, geometry) for image in images]
    assert torch.equal(together["pixel_values"], torch.cat([a["pixel_values"] for a in alone]))
    assert torch.equal(together["image_grid_thw"], torch.cat([a["image_grid_thw"] for a in alone]))


@pytest.mark.parametrize(
    "settings",
    [
        {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]},
        {"image_mean": 0.5, "image_std": 0.25},
        {"do_normalize": False},
        {"do_rescale": False, "do_normalize": False},
        {"patch_size": 14},
    ],
)
def test_the_processors_own_settings_are_read_not_assumed(settings):
    processor = Qwen2VLImageProcessorPil(**{"patch_size": 16, "merge_size": 2, **settings})
    geometry = ImageGeometry.of(processor)
    assert geometry is not None
    budget = ImageBudget(16 * 1024, 256 * 1024, geometry.factor)
    image = photo((900, 700), seed=9)
    fitted = budget.fit(image)
    ours = image_inputs([fitted], budget, geometry)
    assert_same(ours, theirs(processor, [fitted], budget))


@pytest.mark.parametrize(
    "settings",
    [{"do_convert_rgb": False}, {"resample": 2}, {"do_resize": False}, {"image_mean": [0.5, 0.5, 0.5, 0.5]}],
)
def test_a_processor_configured_otherwise_keeps_transformers_path(settings):
    assert ImageGeometry.of(Qwen2VLImageProcessorPil(**{"patch_size": 16, **settings})) is None


def test_an_unknown_processor_class_keeps_transformers_path(processor):
    class SomeOtherProcessor:
        patch_size, merge_size, temporal_patch_size = 16, 2, 2

    assert ImageGeometry.of(SomeOtherProcessor()) is None


def test_the_prompt_is_the_same_through_either_path(demo_model, processor):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model)

    def builder(fast: bool) -> PromptBuilder:
        return PromptBuilder(
            tokenizer, processor, tokenizer.chat_template, min_pixels=16 * 1024, max_pixels=256 * 1024,
            fast_images=fast,
        )  # fmt: skip

    fast, slow = builder(True), builder(False)
    assert fast.image_geometry is not None and slow.image_geometry is None
    images = [chart(1, (512, 384)), chart(2, (320, 640)).convert("RGBA")]  # at their sizes: no resize either way
    turns = [ChatTurn.user("compare them", 2)]
    ours, reference = fast.build(turns, images), slow.build(turns, images)
    assert ours.input_ids == reference.input_ids and ours.mm_token_type_ids == reference.mm_token_type_ids
    assert torch.equal(ours.image_inputs["image_grid_thw"], reference.image_inputs["image_grid_thw"])
    assert (ours.image_inputs["pixel_values"] - reference.image_inputs["pixel_values"]).abs().max() <= 1e-5
    resized = fast.build(turns, [chart(3, (1000, 700)), chart(4, (90, 2000))])  # resized by torch: same grid
    assert resized.input_ids == slow.build(turns, [chart(3, (1000, 700)), chart(4, (90, 2000))]).input_ids
