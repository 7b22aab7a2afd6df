"""Chart questions: every type and language has a gradable canonical answer; wrong replies fail."""

from __future__ import annotations

import json
import random

import pytest

from vlserve.demo.charts import Chart, random_chart
from vlserve.demo.questions import (
    QUESTION_TYPES,
    SEED_QUESTION_ZH,
    grade,
    json_parses,
    make_qa,
    parse_values,
    question_templates,
    tolerance,
)

YEARS = Chart(kind="bar", categories=("2021", "2022", "2023"), values=(12, 7, 30), labelled=True, title=None)
UNLABELLED = Chart(kind="bar", categories=("2021", "2022", "2023"), values=(12, 7, 30), labelled=False, title=None)
ITEMS = Chart(
    kind="line", categories=("North", "South", "East", "West"), values=(5, 40, 22, 9), labelled=True, title="x"
)


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_canonical_answers_grade_correct(qtype: str, lang: str) -> None:
    assert len(question_templates(qtype, lang)) >= 3
    for seed in range(30):
        chart = random_chart(random.Random(seed))
        qa = make_qa(chart, random.Random(seed), qtype=qtype, lang=lang)
        assert (qa.qtype, qa.lang) == (qtype, lang)
        assert qa.question and "{" not in qa.question.replace('{"', "")
        assert grade(qa, chart, qa.answer), (qa, chart)
        assert grade(qa, chart, f"  {qa.answer}\n")


def test_canonical_formats() -> None:
    rng = random.Random(0)
    assert make_qa(YEARS, rng, "values", "en").answer == "2021: 12, 2022: 7, 2023: 30"
    assert make_qa(YEARS, rng, "values", "zh").answer == "2021: 12, 2022: 7, 2023: 30"
    assert make_qa(YEARS, rng, "json", "en").answer == '{"2021": 12, "2022": 7, "2023": 30}'
    assert make_qa(YEARS, rng, "highest", "zh").answer == "2023"
    assert make_qa(YEARS, rng, "lowest", "en").answer == "2022"
    assert make_qa(YEARS, rng, "kind", "en").answer == "bar chart"
    assert make_qa(ITEMS, rng, "kind", "zh").answer == "折线图"
    diff = make_qa(ITEMS, rng, "difference", "en")
    a, b = diff.subjects
    assert a in diff.question and b in diff.question
    assert diff.answer == str(abs(ITEMS.mapping()[a] - ITEMS.mapping()[b]))


def test_wrong_replies_are_rejected() -> None:
    rng = random.Random(1)
    values = make_qa(YEARS, rng, "values", "en")
    assert not grade(values, YEARS, "2021: 12, 2022: 8, 2023: 30")
    assert not grade(values, YEARS, "2021: 12, 2022: 7")
    assert not grade(values, YEARS, "the values are 12, 7 and 30")
    js = make_qa(YEARS, rng, "json", "zh")
    assert not grade(js, YEARS, '{"2021": 12, "2022": 7, "2023": 30')
    assert not grade(js, YEARS, '{"2021": 12, "2022": 7, "2023": 31}')
    assert not grade(js, YEARS, '{"2021": 12, "2022": 7, "2023": "30"}')
    assert not grade(js, YEARS, "[12, 7, 30]")
    assert not grade(make_qa(YEARS, rng, "highest", "en"), YEARS, "2021")
    assert not grade(make_qa(YEARS, rng, "lowest", "zh"), YEARS, "2023")
    diff = make_qa(YEARS, rng, "difference", "zh")
    right = int(diff.answer)
    assert not grade(diff, YEARS, str(right + 1))
    assert not grade(diff, YEARS, str(-right)) or right == 0
    assert not grade(make_qa(YEARS, rng, "kind", "en"), YEARS, "line chart")
    assert not grade(make_qa(YEARS, rng, "kind", "zh"), YEARS, "折线图")
    one = make_qa(YEARS, rng, "value", "en")
    assert grade(one, YEARS, one.answer)
    assert not grade(one, YEARS, str(int(one.answer) + 1))
    assert grade(make_qa(YEARS, rng, "count", "zh"), YEARS, "3")
    assert not grade(make_qa(YEARS, rng, "count", "en"), YEARS, "4")


def test_tolerant_grading() -> None:
    rng = random.Random(2)
    assert grade(make_qa(YEARS, rng, "values", "zh"), YEARS, "2021：12，2022：7，2023：30。")
    assert grade(make_qa(YEARS, rng, "json", "en"), YEARS, '{"2023":30,"2021":12,"2022":7}')
    assert grade(make_qa(YEARS, rng, "kind", "zh"), YEARS, "Bar chart.")
    assert grade(make_qa(YEARS, rng, "kind", "en"), YEARS, "柱状图")


def test_printed_values_must_be_exact_unlabelled_ones_within_two() -> None:
    rng = random.Random(3)
    assert (tolerance(YEARS), tolerance(UNLABELLED)) == (0, 2)
    values = make_qa(UNLABELLED, rng, "values", "en")
    assert grade(values, UNLABELLED, "2021: 14, 2022: 5, 2023: 30")
    assert not grade(values, UNLABELLED, "2021: 15, 2022: 7, 2023: 30")
    assert not grade(values, UNLABELLED, "2021: 12, 2022: 7")
    assert not grade(values, YEARS, "2021: 13, 2022: 7, 2023: 30")
    js = make_qa(UNLABELLED, rng, "json", "zh")
    assert grade(js, UNLABELLED, '{"2021": 11, "2022": 9, "2023": 28}')
    assert not grade(js, UNLABELLED, '{"2021": 11, "2022": 9, "2023": 27}')
    assert not grade(js, UNLABELLED, '{"2021": 12, "2022": 7, "2023": true}')
    one = make_qa(UNLABELLED, rng, "value", "en")
    assert grade(one, UNLABELLED, str(int(one.answer) + 2))
    assert not grade(one, UNLABELLED, str(int(one.answer) + 3))
    diff = make_qa(UNLABELLED, rng, "difference", "en")
    assert grade(diff, UNLABELLED, str(int(diff.answer) + 4))
    assert not grade(diff, UNLABELLED, str(int(diff.answer) + 5))


def test_plural_nouns_in_english_questions() -> None:
    questions = {make_qa(ITEMS, random.Random(seed), "count", "en").question for seed in range(40)}
    assert "Count the categories." in questions
    assert not any("categorys" in q for q in questions)


def test_parse_values() -> None:
    assert parse_values("2021：12，2022：7") == {"2021": 12, "2022": 7}
    assert parse_values("2021: 12, 2022: 7") == {"2021": 12, "2022": 7}
    assert parse_values(" Prod A : 3 ;Prod B:4\n") == {"Prod A": 3, "Prod B": 4}
    assert parse_values("华东：5、华南：6。") == {"华东": 5, "华南": 6}
    assert parse_values("") is None
    assert parse_values("2021: twelve") is None
    assert parse_values("2021: 1, 2021: 2") is None


def test_json_parses() -> None:
    assert json_parses('{"a": 1}')
    assert not json_parses('{"a": 1')
    assert not json_parses("[1, 2]")


def test_seed_question_for_year_charts() -> None:
    questions = {make_qa(YEARS, random.Random(s), "values", "zh").question for s in range(20)}
    assert SEED_QUESTION_ZH in questions
    assert len(questions) >= 2
    item_questions = {make_qa(ITEMS, random.Random(s), "values", "zh").question for s in range(40)}
    assert SEED_QUESTION_ZH not in item_questions


def test_random_type_and_language() -> None:
    rng = random.Random(3)
    qas = [make_qa(YEARS, rng) for _ in range(200)]
    assert {q.qtype for q in qas} == set(QUESTION_TYPES)
    assert {q.lang for q in qas} == {"en", "zh"}
    with pytest.raises(ValueError):
        make_qa(YEARS, rng, "colour", "en")
    assert json.loads(make_qa(ITEMS, rng, "json", "en").answer) == ITEMS.mapping()
