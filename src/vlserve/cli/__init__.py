"""The `vlserve` command: one module per command group, put together here.

serve (serve.py); ask and doc (ask.py); demo build|train|eval (demo.py); keys and audit (keys.py); pull, verify and
models (models.py); bench (bench.py). Each command imports what it needs when it runs, so `vlserve --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vlserve.cli import ask, bench, demo, keys, models, serve


def _version(value: bool) -> None:
    """--version: the installed package's version (the source tree's, when run from one not installed)."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("vlserve")
        except PackageNotFoundError:
            from vlserve import __version__ as number
        typer.echo(f"vlserve {number}")
        raise typer.Exit()


def main(
    show_version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """The options of `vlserve` itself, before the command."""


app = typer.Typer(help="vlserve: serve Qwen-VL vision-language models.", no_args_is_help=True, add_completion=False)
app.callback()(main)
app.command("serve")(serve.serve)
app.command("ask")(ask.ask)
app.command("doc")(ask.doc)
app.command("audit")(keys.audit_command)
app.command("bench")(bench.bench_command)
app.command("verify")(models.verify_command)
app.command("models")(models.models_command)
app.command("pull")(models.pull_command)
app.add_typer(demo.app, name="demo")
app.add_typer(keys.app, name="keys")

__all__ = ["app"]
