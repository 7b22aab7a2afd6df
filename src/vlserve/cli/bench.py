"""`vlserve bench URL`: load any OpenAI-compatible endpoint and report its speed (vlserve.benchmark does it)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vlserve.cli.common import console, fail, option_help

if TYPE_CHECKING:
    from vlserve.benchmark.runner import BenchConfig, BenchRun, EndpointRun

DEFAULT_LEVELS = "1,2,4,8,16"


def bench_command(
    url: Annotated[str, typer.Argument(metavar="URL", help="Base URL, e.g. http://127.0.0.1:8080", show_default=False)],
    model: Annotated[
        str | None,
        typer.Option(
            help=option_help("Model id to send; with --baseline naive, the checkpoint dir.", "the first listed")
        ),
    ] = None,
    concurrency: Annotated[
        str | None, typer.Option(help=option_help("Client counts to sweep.", DEFAULT_LEVELS))
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(help=option_help("Request rates to sweep instead (requests/s, Poisson arrivals).", "none")),
    ] = None,
    requests: Annotated[
        int | None, typer.Option(help=option_help("Requests per level.", "4 per client, 16 or more"))
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help=option_help("Seconds per level (with --requests: whichever ends first).", "none")),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Output token limit per request.")] = 64,
    ignore_eos: Annotated[
        bool, typer.Option("--ignore-eos", help="Fixed output length: send ignore_eos and min_tokens.")
    ] = False,
    workload: Annotated[
        str, typer.Option(help="text, chart, photo, page or multi (3 images); a comma list alternates.")
    ] = "chart",
    image_size: Annotated[
        int | None, typer.Option(help=option_help("Longest image side in pixels.", "per kind"), show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the images, texts and arrival times.")] = 0,
    compare: Annotated[
        str | None, typer.Option(help=option_help("A second base URL: the same load, interleaved; ratios A÷B.", "none"))
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help=option_help("naive: also time the seed articles' script on --model DIR.", "none"))
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar=["VLSERVE_API_KEY", "OPENAI_API_KEY"],
            show_envvar=False,
            help="Bearer token (or VLSERVE_API_KEY, OPENAI_API_KEY).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for the JSON and PNG results.")] = Path("bench-results"),
    timeout: Annotated[float, typer.Option(help="Seconds one request may take.")] = 120.0,
) -> None:
    """Benchmark an OpenAI-compatible endpoint (vlserve, vLLM, SGLang) with streamed chat completions.

    Per load level: requests/s, output tokens/s, TTFT, inter-token and end-to-end latency, errors; JSON and PNG.
    """
    from vlserve.benchmark.endpoint import BenchError
    from vlserve.benchmark.runner import BenchConfig, parse_levels
    from vlserve.benchmark.workloads import WorkloadError, parse_kinds

    if concurrency is not None and rate is not None:
        raise fail("use --concurrency or --rate, not both", 2)
    for name, value, least in (
        ("--requests", requests, 1),
        ("--duration", duration, 0.1),
        ("--max-tokens", max_tokens, 1),
        ("--timeout", timeout, 1),
    ):
        if value is not None and value < least:
            raise fail(f"{name} {value:g} is too small; give at least {least:g}", 2)
    if baseline not in (None, "naive"):
        raise fail(f"--baseline {baseline!r}: the only baseline is naive", 2)
    mode = "rate" if rate is not None else "concurrency"
    option = "--rate" if rate is not None else "--concurrency"
    try:
        levels = parse_levels(rate if rate is not None else (concurrency or DEFAULT_LEVELS), rate=rate is not None)
        kinds = tuple(parse_kinds(workload))
    except WorkloadError as exc:
        raise fail(str(exc), 2) from None
    except ValueError as exc:
        raise fail(f"{option}: {exc}; give a comma list such as 1,2,4", 2) from None
    config = BenchConfig(
        url=url,
        compare_url=compare,
        model=model,
        api_key=api_key or None,
        mode=mode,
        levels=levels,
        requests=requests,
        duration=duration,
        max_tokens=max_tokens,
        ignore_eos=ignore_eos,
        kinds=kinds,
        image_size=image_size,
        seed=seed,
        timeout=timeout,
        baseline=baseline,
    )
    try:
        if baseline == "naive":
            from vlserve.benchmark.naive import check_model_dir

            check_model_dir(model)  # before any load is sent
        bench = _run(config)
    except (BenchError, WorkloadError) as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted; nothing written", 130) from None
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not dump tracebacks
        raise fail(f"the benchmark failed: {type(exc).__name__}: {exc}", 1) from None
    _finish(bench, out)


def _run(config: BenchConfig) -> BenchRun:
    from rich.live import Live

    from vlserve.benchmark.report import LiveTable
    from vlserve.benchmark.runner import run_bench

    table = LiveTable(config.mode, labelled=config.compare_url is not None)
    with Live(table, console=console, refresh_per_second=4, transient=True):
        return asyncio.run(run_bench(config, table, on_status=table.set_status))


def _finish(bench: BenchRun, out: Path) -> None:
    from vlserve.benchmark.plot import write_plot
    from vlserve.benchmark.report import baseline_ratios, final_table, level_name, output_paths, write_json

    stdout = Console()
    for run in bench.runs:
        label = f"{run.endpoint.label}: " if len(bench.runs) > 1 else ""
        stdout.print(f"{label}{run.endpoint.base}  model {run.endpoint.model}", highlight=False)
    stdout.print(final_table(bench))
    for run in bench.runs:
        label = f"{run.endpoint.label}: " if len(bench.runs) > 1 else ""
        stdout.print(label + _tokens_line(run), highlight=False)
    if (ratios := baseline_ratios(bench)) is not None:
        first = ratios["ratio_at_first_level"]
        best = ratios["ratio_at_best_level"]
        stdout.print(
            f"naive script: {ratios['naive_output_tokens_per_s']:.1f} output tok/s; the URL: {first or 0:.2f}× "
            f"that at {level_name(bench.config.mode, ratios['first_level'])}, "
            f"{best or 0:.2f}× at its best ({level_name(bench.config.mode, ratios['best_level'])})",
            highlight=False,
        )
    try:
        json_path, png_path = output_paths(out, bench.started)
        write_json(bench, json_path)
        plotted = importlib.util.find_spec("matplotlib") is not None
        if plotted:
            write_plot(bench, png_path)
    except OSError as exc:
        raise fail(f"cannot write the results to {out}: {exc.strerror or exc}", 1) from None
    stdout.print(f"results: {json_path}", highlight=False, soft_wrap=True)
    plot = png_path if plotted else "not drawn: matplotlib is not installed (pip install 'vlserve[bench]')"
    stdout.print(f"plot:    {plot}", highlight=False, soft_wrap=True)


def _tokens_line(run: EndpointRun) -> str:
    """Mean prompt tokens per request (and image tokens, where the server reports them) over the run."""
    prompts = [s.prompt_tokens_mean for s in run.levels if s.prompt_tokens_mean is not None]
    images = [s.image_tokens_mean for s in run.levels if s.image_tokens_mean is not None]
    prompt = f"{sum(prompts) / len(prompts):.0f}" if prompts else "not reported"
    image = f", of which image tokens {sum(images) / len(images):.0f}" if images else ""
    return f"prompt tokens per request {prompt}{image}"
