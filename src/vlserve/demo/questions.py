"""Questions about synthetic charts, their canonical answers, and grading of model replies.

Every question type has several phrasings in English and in Chinese (the model must learn the intent,
not one string); the answer is one short canonical text per type, the exact target the demo model is
trained to produce. `grade` decides whether a reply is right, a little more tolerant than the target.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Literal

from vlserve.demo.charts import Chart, category_family

__all__ = [
    "KIND_LABELS",
    "QUESTION_TYPES",
    "SEED_QUESTION_ZH",
    "QA",
    "format_json",
    "format_values",
    "grade",
    "json_parses",
    "make_qa",
    "parse_values",
    "question_templates",
    "tolerance",
]

QUESTION_TYPES = ("values", "json", "highest", "lowest", "difference", "kind", "value", "count")
# How often each type is drawn for training: reading the values is the core skill, the rest derive from it;
# one named value and the number of categories are its parts, which give every chart a direct signal.
QUESTION_WEIGHTS = {
    "values": 25, "json": 15, "value": 20, "count": 8, "highest": 9, "lowest": 9, "difference": 7, "kind": 7,
}  # fmt: skip
LANGS = ("en", "zh")
UNLABELLED_TOLERANCE = 2
SEED_QUESTION_ZH = "请分析这张图，各年份的数值分别是多少？"
KIND_LABELS = {"bar": {"en": "bar chart", "zh": "柱状图"}, "line": {"en": "line chart", "zh": "折线图"}}

_NOUN_EN = {"year": "year", "quarter": "quarter", "month": "month", "weekday": "day", "item": "category"}
_PLURAL_EN = {"category": "categories"}
_NOUN_ZH = {"year": "年份", "quarter": "季度", "month": "月份", "weekday": "日期", "item": "项目"}

_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "values": {
        "en": (
            "What are the values in this chart?",
            "Read all values.",
            "List the value of each {noun}.",
            "What is the value for each {noun}?",
            "Read the chart and give every value.",
        ),
        "zh": (
            "各项的数值分别是多少？",
            "请读出图中所有数值。",
            "图中每个{noun}的数值是多少？",
            "请分析这张图，各{noun}的数值分别是多少？",
        ),
    },
    "json": {
        "en": (
            "Return the data as JSON.",
            "Extract the data as JSON.",
            "Give the chart data in JSON format.",
            "Output the values as a JSON object.",
        ),
        "zh": (
            "以JSON格式返回数据。",
            "请把图中数据提取为JSON。",
            "用JSON输出各项数值。",
            "将图表数据转换为JSON格式。",
        ),
    },
    "highest": {
        "en": (
            "Which category has the highest value?",
            "Which {noun} is highest?",
            "Which {noun} has the largest value?",
            "Which one is the highest?",
        ),
        "zh": ("哪一项最高？", "哪个{noun}的数值最大？", "数值最高的是哪一项？", "哪个{noun}最高？"),
    },
    "lowest": {
        "en": (
            "Which category has the lowest value?",
            "Which {noun} is lowest?",
            "Which {noun} has the smallest value?",
            "Which one is the lowest?",
        ),
        "zh": ("哪一项最低？", "哪个{noun}的数值最小？", "数值最低的是哪一项？", "哪个{noun}最低？"),
    },
    "difference": {
        "en": (
            "What is the difference between {a} and {b}?",
            "What is the absolute difference between the values of {a} and {b}?",
            "By how much do {a} and {b} differ?",
        ),
        "zh": ("{a}和{b}相差多少？", "{a}与{b}的差值（绝对值）是多少？", "{a}和{b}之间的差是多少？"),
    },
    "value": {
        "en": ("What is the value of {a}?", "How much is {a}?", "What value does {a} have?"),
        "zh": ("{a}的数值是多少？", "{a}是多少？", "图中{a}对应的数值是多少？"),
    },
    "count": {
        "en": ("How many {nouns} are shown?", "How many categories does the chart have?", "Count the {nouns}."),
        "zh": ("图中有几个{noun}？", "图表有多少个类别？", "一共有几项？"),
    },
    "kind": {
        "en": ("What kind of chart is this?", "What type of chart is shown?", "Is this a bar chart or a line chart?"),
        "zh": ("这是什么类型的图表？", "这是柱状图还是折线图？", "图表的类型是什么？"),
    },
}


@dataclass(frozen=True)
class QA:
    """One question about a chart and its canonical answer.

    `subjects` names the categories the question is about (the two compared by a difference question).
    """

    qtype: str
    lang: Literal["en", "zh"]
    question: str
    answer: str
    subjects: tuple[str, ...] = ()


def question_templates(qtype: str, lang: str) -> tuple[str, ...]:
    """The phrasings of one question type in one language (with `{noun}`, `{a}`, `{b}` slots)."""
    return _TEMPLATES[qtype][lang]


def format_values(mapping: dict[str, int]) -> str:
    """`2021: 12, 2022: 7` — the canonical answer to a values question."""
    return ", ".join(f"{k}: {v}" for k, v in mapping.items())


def format_json(mapping: dict[str, int]) -> str:
    """`{"2021": 12, "2022": 7}` — the canonical answer to a JSON question."""
    return json.dumps(mapping, ensure_ascii=False, separators=(", ", ": "))


def make_qa(chart: Chart, rng: random.Random, qtype: str | None = None, lang: str | None = None) -> QA:
    """A question about `chart` (type and language drawn from `rng` unless given) with its answer."""
    qtype = qtype or rng.choices(QUESTION_TYPES, weights=[QUESTION_WEIGHTS[q] for q in QUESTION_TYPES])[0]
    lang = lang or rng.choice(LANGS)
    if qtype not in _TEMPLATES or lang not in LANGS:
        raise ValueError(f"unknown question type or language: {qtype!r}, {lang!r}")
    family = category_family(chart)
    noun = (_NOUN_EN if lang == "en" else _NOUN_ZH)[family]
    mapping = chart.mapping()
    subjects: tuple[str, ...] = ()
    if qtype == "values" and lang == "zh" and family == "year" and rng.random() < 0.5:
        question = SEED_QUESTION_ZH
    else:
        question = rng.choice(_TEMPLATES[qtype][lang])
    if qtype == "values":
        answer = format_values(mapping)
    elif qtype == "json":
        answer = format_json(mapping)
    elif qtype in ("highest", "lowest"):
        pick = max if qtype == "highest" else min
        answer = pick(mapping, key=mapping.__getitem__)
        subjects = (answer,)
    elif qtype == "value":
        a = rng.choice(chart.categories)
        subjects = (a,)
        answer = str(mapping[a])
        question = question.format(a=a)
    elif qtype == "count":
        answer = str(len(chart.categories))
    elif qtype == "difference":
        a, b = rng.sample(chart.categories, 2)
        subjects = (a, b)
        answer = str(abs(mapping[a] - mapping[b]))
        question = question.format(a=a, b=b)
    else:
        answer = KIND_LABELS[chart.kind][lang]
    question = question.replace("{nouns}", _PLURAL_EN.get(noun, noun + "s")).replace("{noun}", noun)
    lang_: Literal["en", "zh"] = "en" if lang == "en" else "zh"
    return QA(qtype=qtype, lang=lang_, question=question, answer=answer, subjects=subjects)


_PAIR_SPLIT = re.compile(r"[,，、;；\n]+")
_PAIR = re.compile(r"^\s*(.+?)\s*[:：=]\s*(-?\d+)\s*$")


def parse_values(reply: str) -> dict[str, int] | None:
    """`"2021: 12, 2022: 7"` → `{"2021": 12, "2022": 7}`; None unless every piece is `name: integer`.

    Tolerates spaces, full-width colons and commas, `、`/`;` separators, newlines and a final period.
    """
    text = reply.strip().rstrip("。.")
    result: dict[str, int] = {}
    for piece in _PAIR_SPLIT.split(text):
        if not piece.strip():
            continue
        m = _PAIR.match(piece)
        if m is None or m.group(1) in result:
            return None
        result[m.group(1)] = int(m.group(2))
    return result or None


def _json_object(reply: str) -> dict[str, object] | None:
    try:
        obj = json.loads(reply.strip())
    except (ValueError, TypeError):
        return None
    return obj if isinstance(obj, dict) else None


def json_parses(reply: str) -> bool:
    """Whether `reply` is a JSON object."""
    return _json_object(reply) is not None


def _integers(reply: str) -> list[int]:
    return [int(m) for m in re.findall(r"-?\d+", reply)]


def _normalise(text: str) -> str:
    return text.strip().rstrip("。.").strip().lower()


def tolerance(chart: Chart) -> int:
    """How far a value read from `chart` may be off and still count as right.

    Printed values must be read exactly. Without labels a value can only be read off the bar or point
    against the axis, so it counts within ±2 (4 % of the 0-50 axis; ChartQA's "relaxed accuracy" allows 5 %).
    """
    return 0 if chart.labelled else UNLABELLED_TOLERANCE


def _close(read: object, true: int, tol: int) -> bool:
    return type(read) is int and abs(read - true) <= tol


def _same_values(read: dict[str, object] | None, mapping: dict[str, int], tol: int) -> bool:
    return read is not None and set(read) == set(mapping) and all(_close(read[k], v, tol) for k, v in mapping.items())


def grade(qa: QA, chart: Chart, reply: str) -> bool:
    """Whether `reply` correctly answers `qa` about `chart` (values within `tolerance(chart)`)."""
    mapping = chart.mapping()
    tol = tolerance(chart)
    if qa.qtype == "values":
        return _same_values(parse_values(reply), mapping, tol)  # type: ignore[arg-type]
    if qa.qtype == "json":
        return _same_values(_json_object(reply), mapping, tol)
    if qa.qtype in ("highest", "lowest"):
        pick = max if qa.qtype == "highest" else min
        return reply.strip().rstrip("。.").strip() == pick(mapping, key=mapping.__getitem__)
    if qa.qtype == "difference":
        if len(qa.subjects) != 2:
            return _integers(reply) == [int(qa.answer)]
        a, b = qa.subjects
        read = _integers(reply)
        return len(read) == 1 and _close(read[0], abs(mapping[a] - mapping[b]), 2 * tol)
    if qa.qtype == "kind":
        return _normalise(reply) in KIND_LABELS[chart.kind].values()
    if qa.qtype == "value":
        read = _integers(reply)
        return len(read) == 1 and _close(read[0], mapping[qa.subjects[0]], tol)
    if qa.qtype == "count":
        return _integers(reply) == [len(chart.categories)]
    raise ValueError(f"unknown question type: {qa.qtype!r}")
