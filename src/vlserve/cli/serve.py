"""`vlserve serve`, and the checks it makes before it starts: the model, the vllm command, Redis, tracing."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vlserve.cli.common import MODEL_HELP, console, load_settings, setting_help
from vlserve.settings import Settings

SERVER = "Server"
TRANSFORMERS = "Transformers engine"
VLLM = "vLLM engine"
REMOTE = "Remote engine"
LIMITS = "Limits"


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


def _expert_parallel(ctx: typer.Context, param: typer.CallbackParam, value: bool | None) -> bool | None:
    """--expert-parallel and --no-expert-parallel set one setting. Two flags rather than one --x/--no-x option,
    whose second name takes a help column of its own and cuts the option names at 80 columns. The command line
    calls these callbacks in its order, so the later flag wins, as it did with one option."""
    if value:
        ctx.meta["vlserve.expert_parallel"] = param.name == "expert_parallel"
    return value


def serve(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option("--model", help=MODEL_HELP, rich_help_panel=SERVER)] = None,
    served_model_name: Annotated[
        str | None,
        typer.Option(
            help=setting_help("Model id clients send.", "served_model_name"),
            rich_help_panel=SERVER,
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help=setting_help("transformers (in-process), vllm (managed child) or remote.", "engine"),
            rich_help_panel=SERVER,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help=setting_help("Listen address; any but loopback turns API keys on.", "host"), rich_help_panel=SERVER
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help=setting_help("Port.", "port"), rich_help_panel=SERVER)] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(help=setting_help("Requests batched together.", "max_batch_size"), rich_help_panel=TRANSFORMERS),
    ] = None,
    tensor_parallel_size: Annotated[
        int | None,
        typer.Option(help=setting_help("GPUs per model.", "vllm_tensor_parallel_size"), rich_help_panel=VLLM),
    ] = None,
    expert_parallel: Annotated[
        bool | None,
        typer.Option(
            "--expert-parallel",
            callback=_expert_parallel,
            help=setting_help("Expert parallel for MoE.", "vllm_expert_parallel"),
            rich_help_panel=VLLM,
        ),
    ] = None,
    no_expert_parallel: Annotated[
        bool | None,
        typer.Option(
            "--no-expert-parallel",
            callback=_expert_parallel,
            help=setting_help("No expert parallel; the later of the two flags wins.", "vllm_expert_parallel"),
            rich_help_panel=VLLM,
        ),
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None,
        typer.Option(
            metavar="<0-1>",  # shorter than <float>: the help column keeps room for the variable's name at 80 columns
            help=setting_help("Share of GPU memory.", "vllm_gpu_memory_utilization"),
            rich_help_panel=VLLM,
        ),
    ] = None,
    quantization: Annotated[
        str | None,
        typer.Option(
            help=setting_help(
                "vLLM's --quantization for BF16 weights: fp8_per_tensor, fp8_per_block, …",
                "vllm_quantization",
            ),
            rich_help_panel=VLLM,
        ),
    ] = None,
    vllm_args: Annotated[
        str | None,
        typer.Option(
            help=setting_help("Extra arguments for vllm serve, shell-quoted.", "vllm_args"),
            rich_help_panel=VLLM,
        ),
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(
            help=setting_help("Upstream OpenAI base URLs, comma-separated (http://vllm:8000/v1).", "upstream"),
            rich_help_panel=REMOTE,
        ),
    ] = None,
    upstream_model: Annotated[
        str | None,
        typer.Option(
            help=setting_help("The upstream's model name.", "upstream_model"),
            rich_help_panel=REMOTE,
        ),
    ] = None,
    upstream_api_key: Annotated[
        str | None,
        typer.Option(help=setting_help("Bearer token for the upstream.", "upstream_api_key"), rich_help_panel=REMOTE),
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(
            help=setting_help(
                "Context limit (prompt + completion).",
                "max_model_len",
            ),
            rich_help_panel=LIMITS,
        ),
    ] = None,
) -> None:
    """Start the HTTP server (OpenAI-compatible API, /v1/chat/vision, documents, health probes).

    Every flag overrides its environment variable, which overrides the default.
    """
    settings = load_settings(
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
        vllm_expert_parallel=ctx.meta.get("vlserve.expert_parallel"),
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
