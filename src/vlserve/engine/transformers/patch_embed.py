"""The vision tower's patch embedding as one matrix product instead of a Conv3d.

Qwen-VL's patch embedding is a ``Conv3d`` whose kernel equals its stride and its input: each patch of
channels × 2 frames × 16 × 16 pixels becomes one vector. That is a matrix product of the flattened patch
with the flattened kernel, but torch's CPU convolution runs it far slower (measured: 90 ms against 14 ms
for 1024 patches of a 1152-wide tower, 5 against 1 ms for the demo's; vLLM made the same change). The
weights stay where they are; only the module's ``forward`` is replaced, and only where the layer has
exactly that shape (the values agree within float32 rounding, about 5e-6).
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch
from torch.nn import functional

log = logging.getLogger("vlserve.engine")


def use_matmul_patch_embeddings(model: torch.nn.Module) -> int:
    """Replace the forward of every patch embedding whose Conv3d is one kernel per patch; how many were."""
    replaced = 0
    for module in model.modules():
        if type(module).__name__.endswith("VisionPatchEmbed") and _one_kernel_per_patch(module):
            module.forward = types.MethodType(_forward, module)
            replaced += 1
    if replaced:
        log.debug("%d vision patch embedding(s) run as a matrix product", replaced)
    return replaced


def _one_kernel_per_patch(module: Any) -> bool:
    proj = getattr(module, "proj", None)
    if not isinstance(proj, torch.nn.Conv3d) or proj.groups != 1 or proj.padding != (0, 0, 0):
        return False
    shape = (getattr(module, "temporal_patch_size", None), getattr(module, "patch_size", None))
    return (
        proj.kernel_size == proj.stride == (shape[0], shape[1], shape[1])
        and proj.dilation == (1, 1, 1)
        and proj.in_channels == getattr(module, "in_channels", None)
    )


def _forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    weight = self.proj.weight
    flat = hidden_states.reshape(-1, weight[0].numel()).to(dtype=weight.dtype)
    return functional.linear(flat, weight.reshape(weight.shape[0], -1), self.proj.bias)
