"""The vision patch embedding as a matrix product: the same vectors as the Conv3d it replaces."""

from __future__ import annotations

import torch
from transformers import AutoModelForImageTextToText

from vlserve.engine.transformers.patch_embed import use_matmul_patch_embeddings


def test_the_demo_towers_patch_embedding_gives_the_convolutions_vectors(demo_model):
    model = AutoModelForImageTextToText.from_pretrained(demo_model, dtype=torch.float32).eval()
    embed = next(m for m in model.modules() if type(m).__name__.endswith("VisionPatchEmbed"))
    patches = torch.randn(37, embed.in_channels * embed.temporal_patch_size * embed.patch_size**2)
    with torch.inference_mode():
        before = embed(patches)
        assert use_matmul_patch_embeddings(model) == 1
        after = embed(patches)
    assert after.shape == before.shape and torch.allclose(after, before, atol=1e-5)


def test_a_convolution_that_is_not_one_kernel_per_patch_is_left_alone():
    class VisionPatchEmbed(torch.nn.Module):
        patch_size, temporal_patch_size, in_channels = 16, 2, 3

        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Conv3d(3, 8, kernel_size=(2, 16, 16), stride=(2, 8, 8))  # overlapping patches

    module = VisionPatchEmbed()
    assert use_matmul_patch_embeddings(module) == 0 and "forward" not in vars(module)
