"""Held-out evaluation cases: fresh, deterministic, every question type per chart."""

from vlserve.demo.evaluate import Score, make_cases, meets_targets
from vlserve.demo.questions import QUESTION_TYPES


def test_cases_are_deterministic_and_cover_every_question_type():
    first, again = make_cases(3, seed=1), make_cases(3, seed=1)
    assert [c.image_png for c in first] == [c.image_png for c in again]
    assert [c.qa.qtype for c in first] == list(QUESTION_TYPES) * 3
    other = make_cases(3, seed=2)
    assert {c.image_png for c in other}.isdisjoint({c.image_png for c in first})


def test_targets():
    perfect = {name: Score(asked=10, correct=10) for name in (*QUESTION_TYPES, "json_parses")}
    assert meets_targets(perfect)
    perfect["values"] = Score(asked=100, correct=94)
    assert not meets_targets(perfect)
