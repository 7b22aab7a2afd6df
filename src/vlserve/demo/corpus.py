"""The deterministic training corpus of the demo tokenizer.

The demo model reads synthetic charts, so the corpus is about charts: English and Chinese
sentences with years, quarters, months, numbers, percentages, JSON snippets and the questions a
user asks about an image. Everything is generated from a seed; the same seed gives the same lines.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from vlserve.demo.wordlists import EN_WORDS, ZH_WORDS

__all__ = ["corpus_lines"]


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


CHART_KINDS_EN = ("bar chart", "line chart", "pie chart", "table", "scatter plot", "stacked bar chart")
CHART_KINDS_ZH = ("柱状图", "折线图", "饼图", "表格", "散点图", "堆叠柱状图")
METRICS_EN = _split(
    "revenue|net profit|growth rate|sales|cost|users|value|share|temperature|price|volume|margin|output|orders|visits"
)
METRICS_ZH = _split(
    "营业收入|净利润|增长率|销售额|成本|用户数|数值|市场份额|温度|价格|成交量|利润率|产量|订单量|访问量"
)
UNITS_EN = ("million", "billion", "thousand", "percent", "yuan", "dollars", "units", "%")
UNITS_ZH = ("万元", "亿元", "元", "万", "个", "%", "吨", "人")
QUARTERS_ZH = ("第一季度", "第二季度", "第三季度", "第四季度")
MONTHS_EN = _split("January|February|March|April|May|June|July|August|September|October|November|December")
COLORS_EN = ("red", "blue", "green", "orange", "purple", "gray", "black", "yellow")
COLORS_ZH = ("红色", "蓝色", "绿色", "橙色", "紫色", "灰色", "黑色", "黄色")
JSON_KEYS = ("year", "quarter", "month", "label", "value", "series", "unit", "title", "max", "min", "data")

EN_QUESTIONS = (
    "Describe this image.",
    "What does the {kind} show?",
    "Which year has the highest {metric}?",
    "Which year has the lowest {metric}?",
    "What is the {metric} in {year}?",
    "Extract the data from the {kind} as JSON.",
    "Read the values of the {kind} and return a table.",
    "How many bars are there in the chart?",
    "What is the title of the chart?",
    "Compare the two images and list the changes.",
    "Answer with a single number.",
    "Return only valid JSON that matches the schema.",
)
ZH_QUESTIONS = (
    "请描述这张图片。",
    "这张{kind}显示了什么？",
    "哪一年的{metric}最高？",
    "哪一年的{metric}最低？",
    "{year}年的{metric}是多少？",
    "请把{kind}中的数据提取为JSON。",
    "请读取图表中的数值，并以表格形式返回。",
    "图中一共有几根柱子？",
    "图表的标题是什么？",
    "请比较两张图片，列出变化。",
    "只回答一个数字。",
    "只返回符合模式的合法JSON。",
)
EN_FACTS = (
    "The {kind} shows the {metric} from {y0} to {y1}.",
    "In {year}, the {metric} was {num} {unit}.",
    "The highest {metric} is {num} in {year}, and the lowest is {num2} in {year2}.",
    "The {metric} grew by {pct}% in Q{q} {year}.",
    "The {color} line shows the {metric} of each quarter.",
    "In {month} {year} the {metric} reached {num}.{d} {unit}.",
    "The maximum value is {num} and the minimum value is {num2}.",
    "The x-axis shows the year and the y-axis shows the {metric}.",
    "The {metric} increased from {num2} to {num} between {y0} and {y1}.",
    "Each bar is labelled with its value; the tallest bar is {num}.",
)
ZH_FACTS = (
    "这张{kind}展示了{y0}年到{y1}年的{metric}。",
    "{year}年的{metric}为{num}{unit}。",
    "{metric}最高的是{year}年，为{num}{unit}；最低的是{year2}年，为{num2}{unit}。",
    "{year}年{quarter}的{metric}增长了{pct}%。",
    "{color}的折线表示每个季度的{metric}。",
    "{year}年{mo}月的{metric}达到{num}.{d}{unit}。",
    "最高值为{num}，最低值为{num2}。",
    "横轴表示年份，纵轴表示{metric}。",
    "从{y0}年到{y1}年，{metric}从{num2}增长到{num}。",
    "每根柱子上都标有数值，最高的柱子是{num}。",
    "年份、数值、最高、最低、增长率和净利润都可以从图中读出。",
)


def _fill(rng: random.Random, template: str, zh: bool) -> str:
    y0 = rng.randint(1990, 2025)
    return template.format(
        kind=rng.choice(CHART_KINDS_ZH if zh else CHART_KINDS_EN),
        metric=rng.choice(METRICS_ZH if zh else METRICS_EN),
        unit=rng.choice(UNITS_ZH if zh else UNITS_EN),
        color=rng.choice(COLORS_ZH if zh else COLORS_EN),
        year=rng.randint(1990, 2030),
        year2=rng.randint(1990, 2030),
        y0=y0,
        y1=y0 + rng.randint(1, 10),
        num=rng.randint(0, 1000),
        num2=rng.randint(0, 1000),
        d=rng.randint(0, 99),
        pct=round(rng.uniform(-50.0, 150.0), 1),
        q=rng.randint(1, 4),
        quarter=rng.choice(QUARTERS_ZH),
        month=rng.choice(MONTHS_EN),
        mo=rng.randint(1, 12),
    )


def _json_line(rng: random.Random) -> str:
    n = rng.randint(1, 5)
    start = rng.randint(1995, 2025)
    data = [
        {
            rng.choice(("year", "label", "quarter")): start + i,
            "value": rng.choice((rng.randint(0, 1000), round(rng.uniform(0.0, 1000.0), 2))),
        }
        for i in range(n)
    ]
    obj: dict[str, object] = {
        "title": rng.choice(METRICS_ZH + METRICS_EN),
        "unit": rng.choice(UNITS_ZH + UNITS_EN),
        "data": data,
        rng.choice(JSON_KEYS): rng.choice((None, True, False, rng.randint(0, 1000), "")),
    }
    indent = rng.choice((None, 2))
    return json.dumps(obj, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))


def _word_salad(rng: random.Random, zh: bool) -> str:
    words = rng.choices(ZH_WORDS if zh else EN_WORDS, k=rng.randint(4, 14))
    if zh:
        return "".join(words) + rng.choice(("。", "？", "，", "；", "！"))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice((".", "?", ",", ";", ":", "!"))


def corpus_lines(seed: int = 0, n_lines: int = 8000) -> Iterator[str]:
    """Yield `n_lines` deterministic training lines (plus fixed coverage lines first)."""
    rng = random.Random(seed)
    # Fixed coverage: every number 0-1000, quarters, months, ASCII punctuation.
    yield " ".join(str(i) for i in range(1001))
    yield " ".join(f"Q{q} {y}" for y in range(1990, 2031) for q in range(1, 5))
    yield " ".join(MONTHS_EN) + " " + " ".join(f"{m}月" for m in range(1, 13))
    yield "".join(chr(c) for c in range(32, 127))
    yield "\n\n".join(("Answer:", "答案：", "- item", "1. first", "| year | value |", "|---|---|"))
    for _ in range(n_lines):
        roll = rng.random()
        if roll < 0.08:
            # Chat-shaped text, as it reads between the special tokens of the chat template.
            zh = rng.random() < 0.5
            user = _fill(rng, rng.choice(ZH_QUESTIONS if zh else EN_QUESTIONS), zh=zh)
            answer = _fill(rng, rng.choice(ZH_FACTS if zh else EN_FACTS), zh=zh)
            yield f"user\n{user}"
            yield f"assistant\n{answer}"
            if roll < 0.01:
                yield "system\nYou are a helpful assistant."
            continue
        roll = rng.random()
        if roll < 0.20:
            yield _fill(rng, rng.choice(EN_FACTS), zh=False)
        elif roll < 0.40:
            yield _fill(rng, rng.choice(ZH_FACTS), zh=True)
        elif roll < 0.50:
            yield _word_salad(rng, zh=False)
        elif roll < 0.60:
            yield _word_salad(rng, zh=True)
        elif roll < 0.72:
            yield _fill(rng, rng.choice(EN_QUESTIONS), zh=False)
        elif roll < 0.84:
            yield _fill(rng, rng.choice(ZH_QUESTIONS), zh=True)
        else:
            yield _json_line(rng)
