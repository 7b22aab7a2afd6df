"""Score a running server on fresh held-out charts, through the HTTP API, per question type.

Charts come from a seed range training never draws from (training uses one ``random.Random(seed)``
stream; evaluation seeds each chart from ``EVAL_SEED_BASE`` upwards), are sent as PNG data URLs
to ``/v1/chat/completions`` with greedy decoding, and each answer is graded exactly.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from vlserve.demo.charts import Chart, draw_chart, random_chart
from vlserve.demo.questions import QA, QUESTION_TYPES, grade, json_parses, make_qa

EVAL_SEED_BASE = 10**12
VALUES_SPLIT = ("values · printed (exact)", "values · unlabelled (±2)")
TARGETS = {"values": 0.95, "highest": 0.95, "lowest": 0.95, "json_parses": 1.0}


@dataclass
class Score:
    asked: int = 0
    correct: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.asked if self.asked else 0.0


@dataclass(frozen=True)
class Case:
    chart: Chart
    image_png: bytes
    qa: QA


def make_cases(n: int, seed: int) -> list[Case]:
    """``n`` held-out charts, each asked every question type (language drawn per question)."""
    cases = []
    for i in range(n):
        rng = random.Random(EVAL_SEED_BASE + seed * 1_000_000 + i)
        chart = random_chart(rng)
        buffer = io.BytesIO()
        draw_chart(chart, rng).save(buffer, "PNG")
        cases.extend(Case(chart, buffer.getvalue(), make_qa(chart, rng, qtype=q)) for q in QUESTION_TYPES)
    return cases


async def _ask(client: httpx.AsyncClient, case: Case, model: str | None) -> str:
    url = "data:image/png;base64," + base64.b64encode(case.image_png).decode()
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": case.qa.question},
                ],
            }
        ],
        "max_tokens": 96,
        "temperature": 0,
    }
    if model:
        body["model"] = model
    response = await client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


async def evaluate(
    url: str,
    *,
    n: int = 50,
    seed: int = 0,
    model: str | None = None,
    concurrency: int = 8,
    on_answer: Callable[[], None] | None = None,
    api_key: str | None = None,
) -> dict[str, Score]:
    """Ask every case; returns a Score per question type plus ``json_parses``."""
    cases = make_cases(n, seed)
    scores = {q: Score() for q in (*QUESTION_TYPES, *VALUES_SPLIT, "json_parses")}
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=300, headers=headers) as client:

        async def one(case: Case) -> None:
            async with limit:
                reply = await _ask(client, case, model)
            score = scores[case.qa.qtype]
            score.asked += 1
            right = grade(case.qa, case.chart, reply)
            if right:
                score.correct += 1
            elif len(score.failures) < 5:
                score.failures.append(f"{case.qa.question!r} → {reply!r} (expected {case.qa.answer!r})")
            if case.qa.qtype == "values":  # the same answers, split by whether the values are printed
                split = scores[VALUES_SPLIT[0] if case.chart.labelled else VALUES_SPLIT[1]]
                split.asked += 1
                split.correct += right
            if case.qa.qtype == "json":
                scores["json_parses"].asked += 1
                scores["json_parses"].correct += json_parses(reply)
            if on_answer is not None:
                on_answer()

        await asyncio.gather(*(one(case) for case in cases))
    return scores


def meets_targets(scores: dict[str, Score]) -> bool:
    return all(scores[name].accuracy >= target for name, target in TARGETS.items())
