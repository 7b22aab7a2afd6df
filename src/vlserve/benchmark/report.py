"""What a run shows and keeps: the table (live while it runs, then final), the ratios, the JSON file.

The table fits 80 columns: one row per endpoint and level; latencies in milliseconds (TTFT, ITL) and seconds
(end-to-end); with --compare, a third row per level gives A ÷ B for each figure.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from vlserve import __version__
from vlserve.benchmark.measure import RequestResult
from vlserve.benchmark.runner import BenchRun, EndpointRun
from vlserve.benchmark.stats import LevelStats, ratio, summarise

COLUMNS = ("run", "ok/sent", "req/s", "tok/s", "TTFT ms\np50  p95", "ITL ms\np50", "e2e s\np50  p95", "errors")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"  # a ratio: its row is labelled A÷B


def level_name(mode: str, level: float) -> str:
    return f"{level:g}/s" if mode == "rate" else f"c={level:g}"


def stats_row(label: str, stats: LevelStats, mode: str, planned: int | None = None) -> list[str]:
    sent = f"{stats.ok}/{stats.requests}" + (f" of {planned}" if planned and planned > stats.requests else "")
    errors = ", ".join(f"{n}× {key}" for key, n in stats.errors.items())
    return [
        f"{label} {level_name(mode, stats.level)}" + (" capped" if stats.capped else ""),
        sent,
        f"{stats.requests_per_s:.2f}",
        f"{stats.output_tokens_per_s:.1f}",
        f"{_ms(stats.ttft.p50)} {_ms(stats.ttft.p95)}",
        _ms(stats.itl.p50),
        f"{_s(stats.e2e.p50)} {_s(stats.e2e.p95)}",
        errors or "-",
    ]


def ratio_row(a: LevelStats, b: LevelStats, mode: str) -> list[str]:
    return [
        f"A÷B {level_name(mode, a.level)}",
        "",
        _x(ratio(a.requests_per_s, b.requests_per_s)),
        _x(ratio(a.output_tokens_per_s, b.output_tokens_per_s)),
        f"{_x(ratio(a.ttft.p50, b.ttft.p50))} {_x(ratio(a.ttft.p95, b.ttft.p95))}",
        _x(ratio(a.itl.p50, b.itl.p50)),
        f"{_x(ratio(a.e2e.p50, b.e2e.p50))} {_x(ratio(a.e2e.p95, b.e2e.p95))}",
        "",
    ]


def new_table(title: str | None = None) -> Table:
    table = Table(*COLUMNS, box=box.SIMPLE_HEAD, title=title, pad_edge=False, padding=(0, 1))
    for column in table.columns[1:7]:
        column.justify = "right"
    # At 80 columns the figures stay whole on one line (a 5-digit TTFT pair); the run, ok/sent and errors cells
    # wrap at their spaces instead, and fold a word too long for them rather than cut it.
    for column in table.columns[2:7]:
        column.no_wrap = True
    for column, widest_word in zip(table.columns[:2], ("c=16", "120/120"), strict=True):
        column.min_width = len(widest_word)
    for column in (table.columns[0], table.columns[1], table.columns[7]):
        column.overflow = "fold"
    return table


class LiveTable:
    """The runner's observer: finished levels, and the level under way from its results so far."""

    def __init__(self, mode: str, *, labelled: bool = False) -> None:
        self.mode = mode
        self.labelled = labelled  # --compare: rows say A or B
        self.rows: list[tuple[str, LevelStats]] = []
        self.current: tuple[str, float, int | None, list[RequestResult]] | None = None
        self.status = ""
        self.lock = threading.Lock()  # rich refreshes from its own thread

    def set_status(self, text: str) -> None:
        self.status = text

    def level_started(self, label: str, level: float, planned: int | None) -> None:
        with self.lock:
            self.current = (label, level, planned, [])
            self.status = ""

    def result(self, label: str, level: float, result: RequestResult) -> None:
        with self.lock:
            if self.current is not None:
                self.current[3].append(result)

    def level_done(self, label: str, stats: LevelStats) -> None:
        with self.lock:
            self.rows.append((label, stats))
            self.current = None

    def __rich__(self) -> Table:
        with self.lock:
            rows = list(self.rows)
            current = self.current and (*self.current[:3], list(self.current[3]))
        table = new_table()
        table.caption = self.status or None
        for label, stats in rows:
            table.add_row(*stats_row(self._shown(label), stats, self.mode))
        if current is not None:
            label, level, planned, results = current
            stats = summarise(level, results)
            table.add_row(*stats_row(self._shown(label), stats, self.mode, planned), style="dim")
        return table

    def _shown(self, label: str) -> str:
        return label if self.labelled or label == "naive" else ""


def final_table(bench: BenchRun) -> Table:
    mode = bench.config.mode
    table = new_table()
    a = bench.runs[0]
    b = bench.runs[1] if len(bench.runs) > 1 else None
    for i, stats in enumerate(a.levels):
        table.add_row(*stats_row("A" if b else "", stats, mode))
        if b is not None:
            table.add_row(*stats_row("B", b.levels[i], mode))
            table.add_row(*ratio_row(stats, b.levels[i], mode), style="bold", end_section=True)
    if bench.baseline is not None:
        table.add_row(*stats_row("naive", bench.baseline.levels[0], "concurrency"))
    return table


def baseline_ratios(bench: BenchRun) -> dict[str, Any] | None:
    """Output tokens/s of the URL over the naive baseline's: at the first level and at the URL's best level."""
    if bench.baseline is None:
        return None
    naive = bench.baseline.levels[0].output_tokens_per_s
    levels = bench.runs[0].levels
    best = max(levels, key=lambda s: s.output_tokens_per_s)
    return {
        "naive_output_tokens_per_s": naive,
        "first_level": levels[0].level,
        "ratio_at_first_level": ratio(levels[0].output_tokens_per_s, naive),
        "best_level": best.level,
        "ratio_at_best_level": ratio(best.output_tokens_per_s, naive),
        "model_load_s": bench.baseline_load_s,
    }


def _endpoint_json(run: EndpointRun) -> dict[str, Any]:
    levels = []
    for stats, records in zip(run.levels, run.records, strict=True):
        origin = min((r.start for r in records), default=0.0)
        levels.append({**stats.as_json(), "records": [r.as_json(origin) for r in records]})
    endpoint = run.endpoint
    return {"label": endpoint.label, "url": endpoint.base, "model": endpoint.model, "levels": levels}


def to_json(bench: BenchRun) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tool": f"vlserve bench {__version__}",
        "created": datetime.fromtimestamp(bench.started).astimezone().isoformat(timespec="seconds"),
        "config": bench.config.as_json(),
        "endpoints": [_endpoint_json(run) for run in bench.runs],
    }
    if len(bench.runs) == 2:
        data["ratios_a_over_b"] = [
            _ratios(a, b) for a, b in zip(bench.runs[0].levels, bench.runs[1].levels, strict=True)
        ]
    if bench.baseline is not None:
        data["baseline"] = {**_endpoint_json(bench.baseline), **(baseline_ratios(bench) or {})}
    return data


def _ratios(a: LevelStats, b: LevelStats) -> dict[str, Any]:
    return {
        "level": a.level,
        "requests_per_s": ratio(a.requests_per_s, b.requests_per_s),
        "output_tokens_per_s": ratio(a.output_tokens_per_s, b.output_tokens_per_s),
        "ttft_p50": ratio(a.ttft.p50, b.ttft.p50),
        "ttft_p95": ratio(a.ttft.p95, b.ttft.p95),
        "itl_p50": ratio(a.itl.p50, b.itl.p50),
        "e2e_p50": ratio(a.e2e.p50, b.e2e.p50),
        "e2e_p95": ratio(a.e2e.p95, b.e2e.p95),
    }


def output_paths(out_dir: Path, started: float) -> tuple[Path, Path]:
    """``bench-YYYYmmdd-HHMMSS.json`` and ``.png`` in ``out_dir`` (made if missing), never overwriting."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = datetime.fromtimestamp(started).strftime("bench-%Y%m%d-%H%M%S")
    name, n = stem, 1
    while (out_dir / f"{name}.json").exists() or (out_dir / f"{name}.png").exists():
        n += 1
        name = f"{stem}-{n}"
    return out_dir / f"{name}.json", out_dir / f"{name}.png"


def write_json(bench: BenchRun, path: Path) -> None:
    path.write_text(json.dumps(to_json(bench), indent=1) + "\n")
