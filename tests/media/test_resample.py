"""Bicubic resizing on torch against Pillow's, the filter the Qwen-VL processors use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.images import photo
from vlserve.media.resample import resize_image, resize_pixels

REPO = Path(__file__).resolve().parents[2]


def test_torch_resizes_within_two_levels_of_pillow_shrinking_and_enlarging():
    image = photo((1600, 1200), seed=3)
    for size in [(1312, 960), (256, 192), (2048, 1536), (1600, 32)]:
        ours = np.asarray(resize_image(image, size, backend="torch"), dtype=int)
        pillow = np.asarray(resize_image(image, size), dtype=int)
        assert ours.shape == pillow.shape == (size[1], size[0], 3)
        assert np.abs(ours - pillow).max() <= 2 and (ours != pillow).mean() < 0.01


def test_an_image_at_its_size_is_left_as_it_is():
    image = photo((64, 48))
    assert resize_image(image, (64, 48)) is image and resize_image(image, (64, 48), backend="torch") is image
    pixels = np.asarray(image)
    assert resize_pixels(pixels, (64, 48)) is pixels


def test_pixels_come_back_as_plain_rows():
    out = resize_pixels(np.asarray(photo((300, 200))), (150, 100))
    assert out.shape == (100, 150, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_other_modes_are_resized_by_pillow():
    grey = photo((300, 200)).convert("L")
    assert resize_image(grey, (150, 100), backend="torch").tobytes() == grey.resize((150, 100), Image.BICUBIC).tobytes()


def test_the_gateways_resize_never_imports_torch():
    """The remote engine resizes with Pillow: torch (1.2 s, 210 MB) stays out of a gateway's process."""
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from vlserve.engine.base import MediaItem\n"
        "from vlserve.engine.remote.media import inline_image\n"
        "from vlserve.media.resize import ImageBudget\n"
        "url, tokens = inline_image(MediaItem(Image.new('RGB', (3000, 2000))), ImageBudget(4096, 65536), 'auto')\n"
        "assert tokens == 54 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:3]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
