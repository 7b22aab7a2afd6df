"""The pixel budget: the same arithmetic as the Qwen processors, so an image resized once is not resampled again."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from tests.support.images import chart
from vlserve.errors import ImageError
from vlserve.media.resize import DEFAULT_MAX_PIXELS, ImageBudget, budget_from_processor, smart_resize


def test_smart_resize_equals_the_transformers_arithmetic_for_any_size():
    rng = random.Random(0)
    sizes = [(rng.randint(1, 6000), rng.randint(1, 6000)) for _ in range(3000)] + [(10, 1999), (31, 33), (1, 150)]
    for height, width in sizes:
        if max(height, width) / min(height, width) > 200:
            continue
        for factor, low, high in ((32, 64 * 1024, 1280 * 1024), (28, 56 * 56, 28 * 28 * 1280), (32, 16 * 1024, 16384)):
            ours = smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)
            assert ours == hf_smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)


def test_budget_prefers_the_operator_then_the_checkpoint_capped():
    qwen = {"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16, "merge_size": 2}
    assert budget_from_processor(qwen) == ImageBudget(65536, DEFAULT_MAX_PIXELS, 32)
    assert budget_from_processor(qwen, min_pixels=256 * 1024, max_pixels=512 * 1024) == ImageBudget(
        256 * 1024, 512 * 1024, 32
    )
    small = {"size": {"shortest_edge": 16 * 1024, "longest_edge": 160 * 1024}, "patch_size": 14, "merge_size": 2}
    assert budget_from_processor(small) == ImageBudget(16 * 1024, 160 * 1024, 28)
    legacy = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2}  # Qwen2.5-VL keys
    assert budget_from_processor(legacy) == ImageBudget(3136, DEFAULT_MAX_PIXELS, 28)


def test_tokens_and_fit():
    budget = ImageBudget(64 * 1024, 256 * 1024)
    image = chart(1, (1000, 700))
    fitted = budget.fit(image)
    assert fitted.size == (608, 416) and fitted.width % 32 == 0 and fitted.height % 32 == 0
    assert budget.tokens(1000, 700) == (608 // 32) * (416 // 32) <= 256
    assert budget.fit(fitted) is fitted  # already at its size: untouched
    with pytest.raises(ImageError, match="aspect ratio"):
        budget.fit(Image.new("RGB", (4020, 20)))


def test_the_processor_sees_the_same_pixels_whether_it_resizes_or_the_gateway_did(demo_model):
    """The remote engine resizes before sending; the model's processor then has nothing left to resample."""
    processor = AutoImageProcessor.from_pretrained(demo_model)
    size = {"shortest_edge": 64 * 1024, "longest_edge": 256 * 1024}
    budget = ImageBudget(size["shortest_edge"], size["longest_edge"])
    for seed, dims in enumerate([(1000, 700), (123, 457), (2000, 90), (640, 480)]):
        image = chart(seed, dims)
        direct = processor(images=[image], size=size, return_tensors="np")
        resized = processor(images=[budget.fit(image)], size=size, return_tensors="np")
        assert np.array_equal(direct["image_grid_thw"], resized["image_grid_thw"])
        assert np.array_equal(direct["pixel_values"], resized["pixel_values"])


@pytest.mark.parametrize("backend", ["pillow", "torch"])
def test_a_fitted_image_is_within_the_budget_and_the_processor_leaves_its_size(backend):
    """Resized once, straight to the processor's size: ``smart_resize`` of that size is that size again."""
    budget = ImageBudget(64 * 1024, 1280 * 1024)
    rng = random.Random(5)
    for width, height in [(4000, 3000), (3000, 4000), (1600, 1200), (100, 80), (5000, 60)] + [
        (rng.randint(40, 3000), rng.randint(40, 3000)) for _ in range(10)
    ]:
        fitted = budget.fit(chart(1, (width, height)), backend=backend)
        w, h = fitted.size
        assert w % 32 == 0 and h % 32 == 0 and w * h <= budget.max_pixels
        assert hf_smart_resize(h, w, factor=32, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels) == (h, w)
