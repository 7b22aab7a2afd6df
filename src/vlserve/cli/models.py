"""`vlserve pull`, `vlserve verify` and `vlserve models`: fetch checkpoints, check them against their manifests with
no network, list them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vlserve.cli.common import JsonOpt, console, fail, load_settings, option_help

GB = 1e9


def verify_command(
    directory: Annotated[Path, typer.Argument(help="Checkpoint directory with a vlserve-manifest.json.")],
) -> None:
    """Re-check every file of a checkpoint against its manifest (size, then SHA-256); no network."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from vlserve.models.manifest import Manifest, ManifestError, verify

    if not directory.is_dir():
        raise fail(f"{directory} is not a directory", 2)
    try:
        manifest = Manifest.read(directory)
    except ManifestError as exc:
        raise fail(str(exc), 2) from None
    columns = (TextColumn("verifying"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("verify", total=manifest.total_bytes)
            report = verify(directory, progress=lambda n: bar.advance(task, n))
    except (ManifestError, OSError) as exc:  # changed or unreadable while being read: one line, not a traceback
        raise fail(str(exc), 1) from None
    for name in report.unlisted_others:
        console.print(f"[yellow]note:[/yellow] {escape(name)} is not in the manifest", highlight=False)
    if not report.ok:
        for problem in report.problems():
            console.print(f"[red]bad:[/red] {escape(problem)}", highlight=False)
        raise fail(f"{len(report.problems())} file(s) in {directory} do not match the manifest", 1)
    revision = manifest.revision or "none recorded"
    print(f"verified {len(manifest.files)} files, {manifest.total_bytes / GB:.2f} GB, revision {revision}")


def models_command(
    directory: Annotated[
        list[Path] | None,
        typer.Option("--dir", help="Also list this checkpoint, or the checkpoints in this directory."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List local checkpoints: name, size, engine, revision, and whether their sizes match the manifest."""
    from rich.table import Column, Table

    from vlserve.models.local import list_models

    roots = [load_settings().data_dir / "models", *(directory or [])]
    found = list_models(roots)
    if as_json:
        for model in found:
            print(json.dumps(model.as_json()))
        return
    if not found:
        console.print(f"no checkpoints in {', '.join(str(r) for r in roots)}; fetch one with: vlserve pull qwen3-vl-2b")
        return
    table = Table(
        Column("name", no_wrap=True),
        Column("size", no_wrap=True),
        "engine",
        Column("revision", no_wrap=True),
        Column("check", no_wrap=True),
    )
    for model in found:
        table.add_row(model.name, f"{model.size / GB:.2f} GB", model.engine, (model.revision or "")[:12], model.check)
    Console().print(table)
    console.print(f"[dim]in {escape(', '.join(str(r) for r in roots))}; --json shows paths and sources[/dim]")
    if any(not m.verified and m.check != "no manifest" for m in found):
        console.print("a checkpoint with bad files: run vlserve verify DIR to see which")


def pull_command(
    model: Annotated[
        str | None, typer.Argument(help="A catalogue name (see --list) or a hub id such as Qwen/Qwen3-VL-2B-Instruct.")
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help=option_help("Where to put it.", "DATA_DIR/models/NAME"))
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option("--revision", help=option_help("A commit, branch or tag to pin.", "main; master on ModelScope")),
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="huggingface (HF_ENDPOINT, HF_TOKEN) or modelscope (MODELSCOPE_ENDPOINT, MODELSCOPE_API_TOKEN).",
        ),
    ] = "huggingface",
    show_list: Annotated[bool, typer.Option("--list", help="Show the models vlserve knows by name.")] = False,
) -> None:
    """Fetch a checkpoint: safetensors, configs, tokenizer, processor.

    Every weight's SHA-256 is checked against the hub's, and a manifest written. An interrupted pull resumes where it
    stopped when run again.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from vlserve.models import pull
    from vlserve.models.catalogue import UnknownModel, resolve

    if show_list:
        _print_catalogue()
        return
    if model is None:
        raise fail("name a MODEL to pull, or see the catalogue with: vlserve pull --list", 2)
    if source not in ("huggingface", "modelscope"):
        raise fail(f"--source {source!r} is not one of huggingface, modelscope", 2)
    try:
        ref = resolve(model)
    except UnknownModel as exc:
        raise fail(str(exc), 2) from None
    target = directory or load_settings().data_dir / "models" / ref.local_name
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        if source == "modelscope":
            from vlserve.models import pull_modelscope

            plan = pull_modelscope.plan(ref.modelscope, target, revision=revision)
            fetch = pull_modelscope.download
        else:
            plan, fetch = pull.plan(ref.huggingface, target, revision=revision), pull.download
        pull.check_disk(plan)
        console.print(f"pulling {plan.repo_id} at {plan.commit[:12]} into {target} ({plan.total_bytes / GB:.2f} GB)")
        with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task("downloading", total=plan.total_bytes, completed=plan.bytes_present)
            fetch(plan, progress=lambda n: bar.advance(task, n))
            task = bar.add_task("checking", total=plan.total_bytes)
            manifest = pull.finish(plan, source=source, progress=lambda n: bar.advance(task, n))
    except pull.PullError as exc:
        raise fail(str(exc), exc.code) from None
    except KeyboardInterrupt:
        raise fail("interrupted; run the same command again to resume where it stopped", 130) from None
    print(f"pulled {len(manifest.files)} files, {manifest.total_bytes / GB:.2f} GB, revision {manifest.revision}")
    print(f"serve it with: vlserve serve --model {model if directory is None else target}")


def _print_catalogue() -> None:
    from rich.table import Table

    from vlserve.models.catalogue import CATALOGUE

    table = Table(title="vlserve pull NAME", show_lines=True)
    table.add_column("name", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    table.add_column("hub id, engine, where it fits")  # wraps: the table stays readable at 80 columns
    for entry in CATALOGUE:
        about = f"{entry.huggingface}\n{entry.engine}: {entry.fits}"
        table.add_row(entry.name, f"{entry.weights_gb:g} GB\n{entry.dtype}", about)
    Console().print(table)
