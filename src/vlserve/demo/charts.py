"""Synthetic bar and line charts with ground truth, for training and evaluating the demo model.

`sample_chart(seed)` is deterministic: the same seed gives the same `Chart` and identical pixels
(on one machine; see `vlserve.demo.charts_draw` for how installed fonts enter). Values are integers
in 0..50 on a fixed 0..50 y-axis labelled every 10, so an unlabelled chart can still be read exactly.
Chinese category names and titles are used only when a CJK font is installed (`has_cjk_font()`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from vlserve.demo.charts_draw import Y_MAX, draw_chart, has_cjk_font

__all__ = [
    "CATEGORY_FAMILIES",
    "MAX_CATEGORIES",
    "MIN_CATEGORIES",
    "TITLES_EN",
    "TITLES_ZH",
    "Y_MAX",
    "Chart",
    "category_family",
    "draw_chart",
    "has_cjk_font",
    "random_chart",
    "sample_chart",
]

MIN_CATEGORIES, MAX_CATEGORIES = 3, 6
# The highest and the lowest value stand out from the runner-up by at least this much, so "which is
# highest?" has one visible answer even on a chart without value labels.
MIN_GAP = 3
Family = Literal["year", "quarter", "month", "weekday", "item"]

MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTHS_ZH = tuple(f"{m}月" for m in range(1, 13))
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Ordered lists are sliced as consecutive runs; unordered ones are sampled and shuffled.
ITEMS_EN_ORDERED = (("A", "B", "C", "D", "E", "F"), tuple(f"Prod {c}" for c in "ABCDEF"))
ITEMS_EN = (
    ("Alpha", "Beta", "Gamma", "Delta", "Sigma", "Omega", "Nova", "Apex"),
    ("North", "South", "East", "West", "Centre"),
    ("Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Seoul", "Cairo", "Rome"),
)
ITEMS_ZH_ORDERED = (tuple(f"产品{c}" for c in "ABCDEF"),)
ITEMS_ZH = (
    ("华东", "华南", "华北", "华中", "西南", "西北", "东北"),
    ("北京", "上海", "广州", "深圳", "杭州", "成都", "武汉"),
    ("销售部", "研发部", "市场部", "财务部", "客服部"),
)
CATEGORY_FAMILIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "year": (tuple(str(y) for y in range(2014, 2026)),),
    "quarter": (("Q1", "Q2", "Q3", "Q4"), tuple(f"{y}Q{q}" for y in range(2020, 2026) for q in range(1, 5))),
    "month": (MONTHS_EN,),
    "month_zh": (MONTHS_ZH,),
    "weekday": (WEEKDAYS,),
    "item": ITEMS_EN_ORDERED + ITEMS_EN,
    "item_zh": ITEMS_ZH_ORDERED + ITEMS_ZH,
}
TITLES_EN = (
    "Net profit", "Revenue", "Sales", "Orders", "Active users", "Growth rate (%)", "Output (t)",
    "Net profit growth (%)", "Visits", "Cost", "Margin (%)", "Revenue (bn)", "Units sold", "Score",
)  # fmt: skip
TITLES_ZH = (
    "净利润", "营业收入", "销售额", "订单量", "用户数", "增长率（%）", "产量（吨）", "净利润增长率（%）",
    "访问量", "成本", "利润率（%）", "营业收入（亿元）",
)  # fmt: skip

_YEAR = re.compile(r"^(19|20)\d\d$")
_QUARTER = re.compile(r"^(\d{4})?Q[1-4]$")


@dataclass(frozen=True)
class Chart:
    """The ground truth of one chart: what it shows, independent of how it is drawn."""

    kind: Literal["bar", "line"]
    categories: tuple[str, ...]
    values: tuple[int, ...]
    labelled: bool
    title: str | None

    def mapping(self) -> dict[str, int]:
        """Category → value, in chart order."""
        return dict(zip(self.categories, self.values, strict=True))


def category_family(chart: Chart) -> Family:
    """Which family the chart's categories come from (drives question phrasing)."""
    cats = chart.categories
    if all(_YEAR.match(c) for c in cats):
        return "year"
    if all(_QUARTER.match(c) for c in cats):
        return "quarter"
    if all(c in MONTHS_EN or c in MONTHS_ZH for c in cats):
        return "month"
    if all(c in WEEKDAYS for c in cats):
        return "weekday"
    return "item"


def _categories(rng: random.Random, n: int, cjk: bool) -> tuple[str, ...]:
    weights = {"year": 35, "quarter": 14, "month": 12, "weekday": 5, "item": 24}
    if cjk:
        weights |= {"month_zh": 5, "item_zh": 10}
    family = rng.choices(list(weights), weights=list(weights.values()))[0]
    pool = rng.choice(CATEGORY_FAMILIES[family])
    n = min(n, len(pool))
    ordered = family not in ("item", "item_zh") or pool in ITEMS_EN_ORDERED + ITEMS_ZH_ORDERED
    if ordered:
        start = rng.randint(0, len(pool) - n)
        return pool[start : start + n]
    return tuple(rng.sample(pool, n))


def _values(rng: random.Random, n: int) -> tuple[int, ...]:
    while True:
        if rng.random() < 0.5:
            values = [rng.randint(0, Y_MAX) for _ in range(n)]
        else:  # a trend: random walk, the shape of most real financial series
            v = rng.randint(5, Y_MAX - 5)
            values = []
            for _ in range(n):
                values.append(v)
                v = min(Y_MAX, max(0, v + rng.randint(-12, 12)))
        ranked = sorted(values)
        if ranked[-1] - ranked[-2] >= MIN_GAP and ranked[1] - ranked[0] >= MIN_GAP:
            return tuple(values)


def random_chart(rng: random.Random, *, cjk: bool | None = None) -> Chart:
    """Draw a chart's content from `rng`; `cjk=None` allows Chinese text only if a CJK font exists."""
    if cjk is None:
        cjk = has_cjk_font()
    kind: Literal["bar", "line"] = "bar" if rng.random() < 0.55 else "line"
    n = rng.randint(MIN_CATEGORIES, MAX_CATEGORIES)
    categories = _categories(rng, n, cjk)
    values = _values(rng, len(categories))
    labelled = rng.random() < 0.5
    title = None
    if rng.random() < 0.5:
        title = rng.choice(TITLES_ZH) if cjk and rng.random() < 0.4 else rng.choice(TITLES_EN)
    return Chart(kind=kind, categories=categories, values=values, labelled=labelled, title=title)


def sample_chart(seed: int) -> tuple[Chart, Image.Image]:
    """The chart and its RGB image for `seed`; deterministic."""
    rng = random.Random(seed)
    chart = random_chart(rng)
    return chart, draw_chart(chart, rng)
