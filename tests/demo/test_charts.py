"""Synthetic charts: determinism, ranges, no max/min ties, variety, image sizes, CJK handling."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from vlserve.demo.charts import (
    MAX_CATEGORIES,
    MIN_CATEGORIES,
    MIN_GAP,
    Y_MAX,
    Chart,
    category_family,
    draw_chart,
    has_cjk_font,
    random_chart,
    sample_chart,
)
from vlserve.demo.charts_draw import SIZE_RANGE, has_cjk

N_CHARTS = 200


@pytest.fixture(scope="module")
def charts() -> list[Chart]:
    return [random_chart(random.Random(seed)) for seed in range(N_CHARTS)]


def test_same_seed_gives_identical_chart_and_pixels() -> None:
    for seed in (0, 7, 12345):
        chart_a, image_a = sample_chart(seed)
        chart_b, image_b = sample_chart(seed)
        assert chart_a == chart_b
        assert image_a.tobytes() == image_b.tobytes()
    assert sample_chart(1)[1].tobytes() != sample_chart(2)[1].tobytes()


def test_values_categories_and_no_ties(charts: list[Chart]) -> None:
    for chart in charts:
        assert MIN_CATEGORIES <= len(chart.categories) <= MAX_CATEGORIES
        assert len(chart.values) == len(chart.categories)
        assert len(set(chart.categories)) == len(chart.categories)
        assert all(type(v) is int and 0 <= v <= Y_MAX for v in chart.values)
        ranked = sorted(chart.values)
        assert ranked[-1] - ranked[-2] >= MIN_GAP and ranked[1] - ranked[0] >= MIN_GAP
        assert all(len(c) <= 6 for c in chart.categories)
        assert list(chart.mapping()) == list(chart.categories)


def test_variety_over_seeds(charts: list[Chart]) -> None:
    assert {c.kind for c in charts} == {"bar", "line"}
    assert {c.labelled for c in charts} == {True, False}
    assert any(c.title for c in charts) and any(c.title is None for c in charts)
    families = Counter(category_family(c) for c in charts)
    assert set(families) == {"year", "quarter", "month", "weekday", "item"}
    # years come in consecutive runs
    for chart in charts:
        if category_family(chart) == "year":
            years = [int(c) for c in chart.categories]
            assert years == list(range(years[0], years[0] + len(years)))


def test_images_are_rgb_in_size_range_with_jpeg_and_noise_samples() -> None:
    (w_lo, w_hi), (h_lo, h_hi) = SIZE_RANGE
    qualities, sigmas = [], []
    for seed in range(40):
        _, image = sample_chart(seed)
        assert image.mode == "RGB"
        assert w_lo <= image.width <= w_hi and h_lo <= image.height <= h_hi
        qualities.append(image.info["jpeg_quality"])
        sigmas.append(image.info["noise_sigma"])
    assert any(q == 0 for q in qualities) and any(60 <= q <= 95 for q in qualities)
    assert any(s == 0 for s in sigmas) and any(s > 0 for s in sigmas)


def test_latin_only_without_cjk_and_cjk_needs_a_font() -> None:
    latin = [random_chart(random.Random(seed), cjk=False) for seed in range(100)]
    assert not any(has_cjk(c) for chart in latin for c in (*chart.categories, chart.title or ""))
    with_cjk = [random_chart(random.Random(seed), cjk=True) for seed in range(300)]
    zh_chart = next(c for c in with_cjk if any(has_cjk(x) for x in c.categories))
    if has_cjk_font():
        assert draw_chart(zh_chart, random.Random(0)).mode == "RGB"
    else:
        assert not any(has_cjk(c) for seed in range(50) for c in sample_chart(seed)[0].categories)
        with pytest.raises(ValueError, match="CJK font"):
            draw_chart(zh_chart, random.Random(0))
