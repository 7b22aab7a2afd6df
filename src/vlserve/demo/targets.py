"""Per-visual-token training targets for the demo model's vision tower (an auxiliary loss).

Learning to read small printed digits from scratch only through the answer tokens is slow: the decoder
must first learn where to look before the vision tower gets a useful gradient, and within a 20-minute CPU
budget neither happens. The chart generator knows where every label, bar and point is, so each visual
token (one merged 2x2 patch cell) gets four classes to predict from its own output vector:

- ``category_here`` / ``value_here``: the category or value label text this cell shows, else 0;
  for unlabelled charts ``value_here`` sits on the cell of the bar top or line point;
- ``column_category`` / ``column_value``: the category and value of the plot slot the cell lies in,
  so every token of a column carries what the decoder needs to answer about that category.

A linear probe per target reads them during training only; the saved model is the standard class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from vlserve.demo.charts import CATEGORY_FAMILIES, Y_MAX, Chart

__all__ = ["CATEGORY_VOCAB", "NUM_TARGETS", "TARGET_CLASSES", "visual_targets"]

CATEGORY_VOCAB: tuple[str, ...] = tuple(sorted({c for pools in CATEGORY_FAMILIES.values() for p in pools for c in p}))
_CATEGORY_ID = {c: i + 1 for i, c in enumerate(CATEGORY_VOCAB)}
# classes per target, 0 meaning "nothing here": category_here, value_here, column_category, column_value
TARGET_CLASSES: tuple[int, ...] = (len(CATEGORY_VOCAB) + 1, Y_MAX + 2, len(CATEGORY_VOCAB) + 1, Y_MAX + 2)
NUM_TARGETS = len(TARGET_CLASSES)

Box = Sequence[float]


def _cells(box: Box, scale_x: float, scale_y: float, grid_h: int, grid_w: int) -> tuple[range, range]:
    """The rows and columns of merged cells that a pixel box overlaps."""
    left, top, right, bottom = box
    row0, col0 = min(grid_h - 1, max(0, int(top * scale_y))), min(grid_w - 1, max(0, int(left * scale_x)))
    rows = range(row0, max(row0 + 1, min(grid_h, math.ceil(bottom * scale_y))))
    cols = range(col0, max(col0 + 1, min(grid_w, math.ceil(right * scale_x))))
    return rows, cols


def visual_targets(info: dict[str, Any], size: tuple[int, int], chart: Chart, grid_h: int, grid_w: int) -> torch.Tensor:
    """``(grid_h * grid_w, NUM_TARGETS)`` class ids, in the vision tower's merged-token order (row-major).

    ``info`` is the drawn image's layout record (see ``draw_chart``), ``size`` its (width, height) in pixels,
    ``grid_h`` x ``grid_w`` the merged-token grid the image processor made of it.
    """
    width, height = size
    sx, sy = grid_w / width, grid_h / height
    out = torch.zeros(grid_h, grid_w, NUM_TARGETS, dtype=torch.long)
    categories = [_CATEGORY_ID[c] for c in chart.categories]
    values = [v + 1 for v in chart.values]
    for index, box in enumerate(info["category_boxes"]):
        rows, cols = _cells(box, sx, sy, grid_h, grid_w)
        out[rows.start : rows.stop, cols.start : cols.stop, 0] = categories[index]
    value_boxes = info["value_boxes"] or [(x, y, x, y) for x, y in info["marks"]]
    for index, box in enumerate(value_boxes):
        rows, cols = _cells(box, sx, sy, grid_h, grid_w)
        out[rows.start : rows.stop, cols.start : cols.stop, 1] = values[index]
    x0, x1 = info["plot_x"]
    slot = (x1 - x0) / len(categories)
    for col in range(grid_w):
        x = (col + 0.5) / sx
        if x0 <= x < x1:
            index = min(len(categories) - 1, int((x - x0) // slot))
            out[:, col, 2] = categories[index]
            out[:, col, 3] = values[index]
    return out.reshape(grid_h * grid_w, NUM_TARGETS)
