"""`vlserve ask` and `vlserve doc`: a question about images or videos, a document page by page; through a server's
HTTP API, or with --local in this process."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vlserve.cli.common import (
    DEFAULT_URL,
    ApiKeyOpt,
    LocalOpt,
    ModelOpt,
    UrlOpt,
    console,
    load_settings,
    option_help,
)
from vlserve.cli.serve import ensure_model


def ask(
    images: Annotated[list[str], typer.Argument(help="Image or video files (.mp4, .webm, .mov), or http(s) URLs.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The question.")],
    url: UrlOpt = DEFAULT_URL,
    local: LocalOpt = False,
    model: ModelOpt = None,
    max_tokens: Annotated[
        int | None, typer.Option(help=option_help("Completion limit.", "the server's, VLSERVE_DEFAULT_MAX_TOKENS"))
    ] = None,
    temperature: Annotated[float | None, typer.Option(help=option_help("0 for greedy.", "the model's"))] = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Ask a question about one or more images or videos; the answer streams to stdout."""
    from vlserve.client import ask_local, ask_remote

    try:
        if local:
            settings = load_settings(model=model)
            logging.basicConfig(level=logging.WARNING)
            ensure_model(settings)
            asyncio.run(ask_local(settings, images, prompt, max_tokens=max_tokens, temperature=temperature))
        else:
            ask_remote(url, images, prompt, max_tokens=max_tokens, temperature=temperature, api_key=api_key)
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not dump tracebacks
        from vlserve.client import describe_failure

        console.print(f"[red]error:[/red] {escape(describe_failure(exc))}", highlight=False)
        raise typer.Exit(1) from exc


def doc(
    files: Annotated[list[Path], typer.Argument(help="One PDF, or image files (one page each).", show_default=False)],
    schema: Annotated[
        Path | None,
        typer.Option(help=option_help("JSON Schema file: each page answers JSON under it.", "text per page")),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help=option_help("Instead of the default prompt.", "the server's"))
    ] = None,
    pages: Annotated[str | None, typer.Option(help=option_help('Page range, e.g. "1-5,8".', "every page"))] = None,
    out: Annotated[Path | None, typer.Option(help=option_help("Write the result JSON here.", "stdout"))] = None,
    url: UrlOpt = DEFAULT_URL,
    local: LocalOpt = False,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
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
                settings = load_settings(model=model)
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
