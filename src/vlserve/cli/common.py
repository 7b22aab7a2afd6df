"""What the command modules share: the stderr console, help texts, settings from flags, one-line failures and the
options more than one command takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vlserve.settings import Settings

console = Console(stderr=True, soft_wrap=True)


def _brackets(text: str) -> str:
    """``[…]`` as help text, escaped for rich markup when typer renders help with rich (else the brackets would be
    eaten as a markup tag and print as "Listen address .")."""
    from typer.core import HAS_RICH

    return escape(text) if HAS_RICH else text


def option_help(text: str, default: str) -> str:
    """``text [default: …]``."""
    return f"{text} {_brackets(f'[default: {default}]')}"


def env_var(name: str) -> str:
    """The environment variable of setting ``name``: VLSERVE_NAME."""
    if name not in Settings.model_fields:
        raise KeyError(f"no setting {name!r}")
    return f"{Settings.model_config.get('env_prefix', '')}{name}".upper()


def setting_default(name: str) -> str:
    """The default of setting ``name`` as --help shows it: the configuration reference's wording, read from the
    setting itself, so help, reference and server agree."""
    from vlserve.settings.reference import default_text

    return default_text(name, Settings.model_fields[name]).replace("`", "")


def setting_help(text: str, name: str) -> str:
    """Help for a flag that sets setting ``name``: ``text [env var: VLSERVE_NAME] [default: …]``.
    The flag wins over the variable, the variable over the default."""
    return f"{text} {_brackets(f'[env var: {env_var(name)}]')} {_brackets(f'[default: {setting_default(name)}]')}"


def problems(exc: ValueError) -> str:
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


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with the flags that were given on top; one line and exit 2 when invalid."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        console.print(f"[red]invalid settings:[/red] {escape(problems(exc))}", highlight=False)
        raise typer.Exit(2) from exc


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit to raise."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


MODEL_HELP = setting_help("Checkpoint directory, or a pulled model's name or hub id.", "model")
ModelOpt = Annotated[Path | None, typer.Option("--model", help=MODEL_HELP)]
UrlOpt = Annotated[str, typer.Option(help="Server base URL.")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Run the model in this process, no server.")]
ApiKeyOpt = Annotated[str | None, typer.Option(envvar="VLSERVE_API_KEY", help="Bearer token, if the server needs one.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")]
DEFAULT_URL = "http://127.0.0.1:8080"
