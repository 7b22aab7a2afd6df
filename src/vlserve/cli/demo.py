"""`vlserve demo build|train|eval`: the bundled demo model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vlserve.cli.common import DEFAULT_URL, ApiKeyOpt, UrlOpt, console
from vlserve.settings import Settings

app = typer.Typer(help="The bundled demo model.", no_args_is_help=True)


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
    """Write the tiny random-weight Qwen3-VL-MoE checkpoint: the test fixture and default model.

    With --shape, a random-weight checkpoint at a released model's exact architecture, for measuring speed and memory.
    """
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


def demo_eval(
    url: UrlOpt = DEFAULT_URL,
    n: Annotated[int, typer.Option(help="Fresh charts; each is asked every question type.")] = 50,
    seed: Annotated[int, typer.Option(help="Which held-out charts (never used in training).")] = 0,
    check: Annotated[bool, typer.Option(help="Exit 1 when a target is missed.")] = False,
    api_key: ApiKeyOpt = None,
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


app.command("build")(demo_build)
app.command("train")(demo_train)
app.command("eval")(demo_eval)
