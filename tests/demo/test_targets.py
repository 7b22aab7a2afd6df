"""Per-visual-token targets line up with what the drawn chart shows in each token's cell."""

from __future__ import annotations

import random

import numpy as np
import pytest

from vlserve.demo.charts import Chart, draw_chart, random_chart
from vlserve.demo.targets import CATEGORY_VOCAB, NUM_TARGETS, TARGET_CLASSES, visual_targets

CELL = 32  # pixels per merged token in these tests, as in the image processor: 2 x 2 patches of 16


def _grid(image) -> tuple[int, int]:
    return image.height // CELL, image.width // CELL


def _draw(chart: Chart, seed: int):
    image = draw_chart(chart, random.Random(seed))
    grid_h, grid_w = _grid(image)
    return image, grid_h, grid_w, visual_targets(image.info, image.size, chart, grid_h, grid_w)


def _ink(image, row: int, col: int) -> float:
    grid_h, grid_w = _grid(image)
    resized = image.convert("L").resize((grid_w * CELL, grid_h * CELL))  # what the image processor does
    cell = np.asarray(resized, dtype=np.float32)[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL]
    return float((cell < 150).mean())


@pytest.mark.parametrize("seed", range(12))
def test_label_cells_hold_ink_and_columns_hold_their_category(seed: int) -> None:
    chart = random_chart(random.Random(seed))
    image, grid_h, grid_w, targets = _draw(chart, seed)
    assert targets.shape == (grid_h * grid_w, NUM_TARGETS)
    assert all(int(targets[:, i].max()) < n for i, n in enumerate(TARGET_CLASSES))
    cells = targets.reshape(grid_h, grid_w, NUM_TARGETS)
    ids = [CATEGORY_VOCAB.index(c) + 1 for c in chart.categories]
    # every category label is marked on at least one cell, and the marked cells hold its text
    assert {int(v) for v in cells[..., 0].unique()} == {0, *ids}
    for row, col in zip(*np.nonzero(cells[..., 0].numpy()), strict=True):
        assert _ink(image, row, col) > 0
    # the columns of the plot carry the categories left to right, with their values
    column_ids = [int(v) for v in cells[0, :, 2] if v]
    assert sorted(set(column_ids), key=column_ids.index) == ids
    for col in range(grid_w):
        if int(cells[0, col, 2]):
            index = ids.index(int(cells[0, col, 2]))
            assert (cells[:, col, 3] == chart.values[index] + 1).all()
    # the y-axis tick labels on the left are outside every column
    assert int(cells[0, 0, 2]) == 0


def test_value_cells_sit_on_the_labels_or_on_the_bar_tops() -> None:
    labelled = Chart("bar", ("2021", "2022", "2023"), (10, 45, 25), labelled=True, title=None)
    image, grid_h, grid_w, targets = _draw(labelled, 0)
    cells = targets.reshape(grid_h, grid_w, NUM_TARGETS)[..., 1]
    assert {int(v) for v in cells.unique()} == {0, 11, 46, 26}
    top_row = {v: int(np.nonzero((cells == v + 1).numpy())[0].min()) for v in (10, 45, 25)}
    assert top_row[45] < top_row[25] < top_row[10]  # higher values are read higher up

    unlabelled = Chart("bar", ("2021", "2022", "2023"), (10, 45, 25), labelled=False, title=None)
    image, grid_h, grid_w, targets = _draw(unlabelled, 0)
    cells = targets.reshape(grid_h, grid_w, NUM_TARGETS)[..., 1]
    assert int((cells > 0).sum()) == 3  # one cell per bar top
