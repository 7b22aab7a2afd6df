"""The `vlserve` command: serve, ask, doc, demo; keys and audit (cli_keys), the model commands (cli_models), bench
(cli_bench)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vlserve.cli_bench import bench_command
from vlserve.cli_keys import audit_command, keys_app
from vlserve.cli_models import register as register_model_commands
from vlserve.settings import Settings

app = typer.Typer(help="vlserve: serve Qwen-VL vision-language models.", no_args_is_help=True, add_completion=False)
demo_app = typer.Typer(help="The bundled demo model.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
console = Console(stderr=True, soft_wrap=True)


def _help(text: str, default: str) -> str:
    """``text`` and ``[default: …]``, escaped for rich markup when typer renders help with rich (else the
    brackets would be eaten as a markup tag and print as "Listen address .")."""
    from typer.core import HAS_RICH

    shown = f"[default: {default}]"
    return f"{text} {escape(shown) if HAS_RICH else shown}"


def _default(name: str) -> str:
    """The default of setting ``name`` as --help shows it: read from Settings, so help and server agree."""
    return str(Settings.model_fields[name].get_default(call_default_factory=True))


ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help=_help("Checkpoint directory, or a pulled model's name or hub id.", "the demo model")),
]


def _problems(exc: ValueError) -> str:
    """A settings error in one line: each offending setting and what is wrong with it."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))  # none: a rule across settings, which it names
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        console.print(f"[red]invalid settings:[/red] {escape(_problems(exc))}", highlight=False)
        raise typer.Exit(2) from exc


def ensure_model(settings: Settings) -> Path:
    """The checkpoint to serve; builds the demo model on first use when none is configured."""
    from vlserve.engine.checkpoint_files import CheckpointError, read_config
    from vlserve.models.local import pull_hint

    if settings.model is not None and (hint := pull_hint(settings.model, settings.data_dir)) is not None:
        console.print(f"[red]cannot serve:[/red] {escape(hint)}", highlight=False)
        raise typer.Exit(2)
    model_dir = settings.model_dir()
    if settings.model is None and not (model_dir / "config.json").is_file():
        from vlserve.demo import build_random_model

        with console.status(f"building the demo model in {model_dir} …"):
            build_random_model(model_dir)
    try:
        read_config(model_dir)
    except CheckpointError as exc:
        console.print(f"[red]cannot serve:[/red] {escape(exc.message)}", highlight=False)
        raise typer.Exit(2) from exc
    return model_dir


def check_vllm(settings: Settings) -> None:
    """The managed engine needs the vllm command; without it, one line saying how to install it."""
    import shutil

    from vlserve.engine.vllm import INSTALL_HINT

    if shutil.which(settings.vllm_executable) is None:
        message = (
            f"vLLM is not installed ({settings.vllm_executable!r} is not on PATH); "
            f"install it with {INSTALL_HINT}, or point VLSERVE_VLLM_EXECUTABLE at it"
        )
        console.print(f"[red]cannot serve:[/red] {escape(message)}", highlight=False)
        raise typer.Exit(2)


def check_redis(url: str) -> None:
    """The rate limits' Redis (VLSERVE_REDIS_URL) must answer before the server starts; else one line."""
    from vlserve.errors import VLServeError
    from vlserve.security.ratelimit_redis import check_reachable

    try:
        check_reachable(url)
    except VLServeError as exc:
        console.print(f"[red]cannot serve:[/red] {escape(exc.message)}", highlight=False)
        raise typer.Exit(2) from None


def check_tracing() -> None:
    """Trace export (VLSERVE_OTLP_ENDPOINT) needs the OpenTelemetry SDK; without it, one line saying how to add it."""
    from vlserve.observability.otlp_config import INSTALL_HINT, missing_package

    if (module := missing_package()) is not None:
        message = f"VLSERVE_OTLP_ENDPOINT is set but OpenTelemetry ({module}) is not installed; run {INSTALL_HINT}"
        console.print(f"[red]cannot serve:[/red] {escape(message)}", highlight=False)
        raise typer.Exit(2)


@app.command()
def serve(
    model: ModelOpt = None,
    host: Annotated[
        str | None, typer.Option(help=_help("Listen address; any but loopback turns API keys on.", _default("host")))
    ] = None,
    port: Annotated[int | None, typer.Option(help=_help("Port.", _default("port")))] = None,
    engine: Annotated[
        str | None,
        typer.Option(help=_help("transformers (in-process), vllm (managed child) or remote.", _default("engine"))),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help=_help("Requests batched together.", _default("max_batch_size")))
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help=_help("Model id clients send.", "the checkpoint directory name"))
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(help=_help("Context limit.", "the model's; vllm: 32768; remote: the upstream's"))
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help=_help("remote: upstream OpenAI base URLs, comma-separated (http://vllm:8000/v1).", "none")),
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option(help=_help("remote: the upstream's model name.", "the first model it lists"))
    ] = None,
    upstream_api_key: Annotated[
        str | None,
        typer.Option(help=_help("remote: bearer token for the upstream (or VLSERVE_UPSTREAM_API_KEY).", "none")),
    ] = None,
    tensor_parallel_size: Annotated[
        int | None, typer.Option(help=_help("vllm: GPUs per model.", _default("vllm_tensor_parallel_size")))
    ] = None,
    expert_parallel: Annotated[
        bool | None,
        typer.Option("--expert-parallel/--no-expert-parallel", help=_help("vllm: expert parallel for MoE.", "off")),
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None,
        typer.Option(help=_help("vllm: share of GPU memory.", _default("vllm_gpu_memory_utilization"))),
    ] = None,
    quantization: Annotated[
        str | None,
        typer.Option(
            help=_help("vllm: --quantization for BF16 weights: fp8_per_tensor, fp8_per_block, …", "the checkpoint's")
        ),
    ] = None,
    vllm_args: Annotated[
        str | None, typer.Option(help=_help("vllm: extra arguments for vllm serve, shell-quoted.", "none"))
    ] = None,
) -> None:
    """Start the HTTP server (OpenAI-compatible API, /v1/chat/vision, documents, health probes)."""
    settings = _settings(
        model=model,
        host=host,
        port=port,
        engine=engine,
        max_batch_size=max_batch_size,
        served_model_name=served_model_name,
        max_model_len=max_model_len,
        upstream=upstream,
        upstream_model=upstream_model,
        upstream_api_key=upstream_api_key,
        vllm_tensor_parallel_size=tensor_parallel_size,
        vllm_expert_parallel=expert_parallel,
        vllm_gpu_memory_utilization=gpu_memory_utilization,
        vllm_quantization=quantization,
        vllm_args=vllm_args,
    )
    from vlserve.app import build_app  # after the settings: a wrong one is refused without importing the server
    from vlserve.observability.logging import configure_logging
    from vlserve.server import BindError, bind
    from vlserve.server import serve as run_server

    configure_logging(settings.log_level, settings.log_format)
    try:  # the port first: a server that cannot listen touches no model, database or job
        sockets = bind(settings.host, settings.port)
    except BindError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    try:
        if settings.redis_url:
            check_redis(settings.redis_url)
        if settings.otlp_endpoint is not None:
            check_tracing()
        if settings.engine == "remote":
            if settings.model is not None:
                ensure_model(settings)
            target = f"{len(settings.upstream)} upstream(s)"
        else:
            if settings.engine == "vllm":
                check_vllm(settings)
            target = str(ensure_model(settings))
        name = settings.model_name() or "the upstream's model"
        serving = f"({settings.engine}) from {target} on http://{settings.host}:{settings.port}"
        if settings.log_format == "json":  # every line of the server's output is then one JSON object
            logging.getLogger("vlserve.cli").info("serving %s %s", name, serving)
        else:
            console.print(f"serving [bold]{escape(name)}[/bold] {serving}")
        run_server(settings, build_app(settings), sockets)
    finally:
        for sock in sockets:
            sock.close()
    _exit_drained()


def _exit_drained() -> None:
    """End the process once the server has drained and closed everything: the exit handlers run (logs flushed,
    traces exported), but not the interpreter's teardown after them, which frees torch's and the model's objects
    one by one and kept a stopped server alive for seconds (3 s for the demo model on 2 cores)."""
    import atexit

    atexit._run_exitfuncs()  # what a normal exit runs first
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command()
def ask(
    images: Annotated[list[str], typer.Argument(help="Image or video files (.mp4, .webm, .mov), or http(s) URLs.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The question.")],
    url: Annotated[str, typer.Option(help="Server base URL.")] = "http://127.0.0.1:8080",
    local: Annotated[bool, typer.Option("--local", help="Run the model in this process, no server.")] = False,
    model: ModelOpt = None,
    max_tokens: Annotated[
        int | None, typer.Option(help=_help("Completion limit.", "the server's, VLSERVE_DEFAULT_MAX_TOKENS"))
    ] = None,
    temperature: Annotated[float | None, typer.Option(help=_help("0 for greedy.", "the model's"))] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="VLSERVE_API_KEY", help="Bearer token, if the server needs one.")
    ] = None,
) -> None:
    """Ask a question about one or more images or videos; the answer streams to stdout."""
    from vlserve.client import ask_local, ask_remote

    try:
        if local:
            settings = _settings(model=model)
            logging.basicConfig(level=logging.WARNING)
            ensure_model(settings)
            asyncio.run(ask_local(settings, images, prompt, max_tokens=max_tokens, temperature=temperature))
        else:
            ask_remote(url, images, prompt, max_tokens=max_tokens, temperature=temperature, api_key=api_key)
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not dump tracebacks
        from vlserve.client import describe_failure

        console.print(f"[red]error:[/red] {escape(describe_failure(exc))}", highlight=False)
        raise typer.Exit(1) from exc


@app.command()
def doc(
    files: Annotated[list[Path], typer.Argument(help="One PDF, or image files (one page each).", show_default=False)],
    schema: Annotated[
        Path | None, typer.Option(help=_help("JSON Schema file: each page answers JSON under it.", "text per page"))
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help=_help("Instead of the default prompt.", "the server's"))
    ] = None,
    pages: Annotated[str | None, typer.Option(help=_help('Page range, e.g. "1-5,8".', "every page"))] = None,
    out: Annotated[Path | None, typer.Option(help=_help("Write the result JSON here.", "stdout"))] = None,
    url: Annotated[str, typer.Option(help="Server base URL.")] = "http://127.0.0.1:8080",
    local: Annotated[bool, typer.Option("--local", help="Run the model in this process, no server.")] = False,
    model: ModelOpt = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="VLSERVE_API_KEY", help="Bearer token, if the server needs one.")
    ] = None,
) -> None:
    """Read a document page by page: text per page, or JSON under a schema, with a page progress bar."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vlserve.client import describe_failure
    from vlserve.documents.client import InputError, check_inputs, run_local, run_remote
    from vlserve.documents.intake import Submission

    try:  # everything that can be checked here is, before any upload
        schema_text = check_inputs(files, schema, out)
    except InputError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    form = Submission(prompt=prompt, json_schema=schema_text, pages=pages)
    columns = (TextColumn("pages"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    job = ""
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("pages", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            def accepted(job_id: str) -> None:
                nonlocal job
                job = f"{url.rstrip('/')}/v1/documents/{job_id}"
                console.print(f"job {job_id} accepted: {job}", highlight=False)

            if local:
                settings = _settings(model=model)
                logging.basicConfig(level=logging.WARNING)
                ensure_model(settings)
                result = asyncio.run(run_local(settings, files, form, on_progress=progress))
            else:
                result = run_remote(url, files, form, on_progress=progress, api_key=api_key, on_accepted=accepted)
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        where = f"; the job goes on: {job} (DELETE it to cancel)" if job else ""
        console.print(f"[yellow]interrupted[/yellow]{escape(where)}", highlight=False)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not dump tracebacks
        console.print(f"[red]error:[/red] {escape(describe_failure(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    text = json.dumps(result, ensure_ascii=False, indent=2)
    if out is None:
        print(text)
    else:
        try:
            out.write_text(text + "\n")
        except OSError as exc:
            kept = f"; the result stays on the server: {job}/result" if job else ""
            console.print(f"[red]error:[/red] {escape(describe_failure(exc) + kept)}", highlight=False)
            raise typer.Exit(1) from None
        console.print(f"result written to {out}")
    failed = [p for p in result["pages"] if p["status"] == "failed"]
    for page in failed:
        console.print(f"[yellow]page {page['page']} failed:[/yellow] {page.get('error')}")
    if result["status"] != "succeeded":
        raise typer.Exit(1)


@demo_app.command("build")
def demo_build(
    out: Annotated[Path | None, typer.Option(help="Output directory \\[default: ~/.cache/vlserve/models/…].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Rebuild even if it exists.")] = False,
    shape: Annotated[
        str | None,
        typer.Option(
            help="A released architecture to fill with random bfloat16 weights instead: qwen3-vl-2b (4.3 GB), "
            "qwen3-vl-4b (8.9 GB) or qwen3-vl-30b-a3b (62 GB; bench/gpu_shape.py builds it with fewer layers); "
            "written to ~/.cache/vlserve/models/random-SHAPE unless --out is given."
        ),
    ] = None,
) -> None:
    """Write the tiny random-weight Qwen3-VL-MoE checkpoint (the test fixture and default model), or with
    --shape a random-weight checkpoint at a released model's exact architecture, for measuring speed and memory."""
    if shape is None:
        from vlserve.demo import build_random_model

        target = out or Settings().random_demo_dir()
        with console.status(f"building the demo model in {target} …"):
            path = build_random_model(target, seed=seed, overwrite=overwrite)
        console.print(f"demo model ready: {path}")
        return
    from vlserve.demo.build_shape import NotEnoughSpaceError, build_shape_model
    from vlserve.demo.shapes import UnknownShapeError, shape_config

    try:
        shape_config(shape)
    except UnknownShapeError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    target = out or Settings().data_dir / "models" / f"random-{shape}"
    try:
        with console.status(f"building a random-weight {shape} in {target} …"):
            path = build_shape_model(target, shape, seed=seed, overwrite=overwrite)
    except (NotEnoughSpaceError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"{shape} (random weights) ready: {path}")


@demo_app.command("train")
def demo_train(
    out: Annotated[Path, typer.Option(help="Output checkpoint directory.")],
    steps: Annotated[int | None, typer.Option(help="Optimizer steps \\[default: the shipped model's].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step \\[default: the shipped model's].")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the tokenizer, the weights and every chart.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, or cuda to train on a GPU (bf16).")] = "cpu",
    workers: Annotated[int, typer.Option(help="Processes drawing charts (same data for any number).")] = 1,
) -> None:
    """Train the chart-reading demo model from scratch (reproducible for a given seed and device)."""
    from dataclasses import replace

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from vlserve.demo.train import TrainConfig, train

    config = TrainConfig(seed=seed, device=device, workers=workers)
    config = replace(config, steps=steps or config.steps, batch_size=batch_size or config.batch_size)
    columns = (
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} loss {task.fields[loss]} (visual {task.fields[visual]})"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=config.steps, loss="-", visual="-")
        path = train(
            out,
            config,
            on_progress=lambda p: bar.update(
                task, completed=p.step, loss=f"{p.loss:.4f}", visual=f"{p.visual_loss:.3f}"
            ),
        )
    console.print(f"trained model written to {path}")


@demo_app.command("eval")
def demo_eval(
    url: Annotated[str, typer.Option(help="Server base URL.")] = "http://127.0.0.1:8080",
    n: Annotated[int, typer.Option(help="Fresh charts; each is asked every question type.")] = 50,
    seed: Annotated[int, typer.Option(help="Which held-out charts (never used in training).")] = 0,
    check: Annotated[bool, typer.Option(help="Exit 1 when a target is missed.")] = False,
    api_key: Annotated[
        str | None, typer.Option(envvar="VLSERVE_API_KEY", help="Bearer token, if the server needs one.")
    ] = None,
) -> None:
    """Score a server on fresh held-out charts through the HTTP API, per question type."""
    from rich.progress import Progress
    from rich.table import Table

    from vlserve.demo.evaluate import TARGETS, evaluate, meets_targets
    from vlserve.demo.questions import QUESTION_TYPES

    with Progress(console=console) as bar:
        task = bar.add_task("asking", total=n * len(QUESTION_TYPES))
        scores = asyncio.run(evaluate(url, n=n, seed=seed, on_answer=lambda: bar.advance(task), api_key=api_key))
    table = Table("question type", "asked", "correct", "accuracy", "target")
    for name, score in scores.items():
        target = TARGETS.get(name)
        table.add_row(
            name, str(score.asked), str(score.correct), f"{score.accuracy:.1%}", f"≥ {target:.0%}" if target else ""
        )
    Console().print(table)
    for name, score in scores.items():
        for failure in score.failures[:2]:
            console.print(f"[dim]{name}: {failure}[/dim]")
    if check and not meets_targets(scores):
        raise typer.Exit(1)


app.add_typer(keys_app, name="keys")
app.command("audit")(audit_command)
app.command("bench")(bench_command)
register_model_commands(app)

if __name__ == "__main__":
    app()
