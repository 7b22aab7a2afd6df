"""The command-line reference page of the docs site, generated from the typer app: every command and subcommand in
the app's order, with its help, usage line and options (names, environment variable, default, help)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import typer
import typer.main
from rich.text import Text

from vlserve.cli import app

_ENV = re.compile(r"\s*\[env var: ([^\]]+)\]")
_DEFAULT = re.compile(r"\s*\[default: ([^\]]*)\]")


def markdown() -> str:
    """The reference page as plain markdown (no ANSI, no rich markup)."""
    root = typer.main.get_command(app)
    lines = [
        "# Command line",
        "",
        "<!-- generated from the typer app by vlserve.cli.reference.markdown(); edit the commands, not this page -->",
        "",
        "Every command also takes `--help`. A flag that sets a server setting names its environment variable; the "
        "flag wins over the variable, the variable over the default.",
    ]
    for depth, command, ctx in _walk(root, typer.Context(root, info_name="vlserve"), 0):
        if depth:
            lines += ["", f"{'#' * min(depth + 1, 3)} {ctx.command_path}"]
        lines += ["", *_description(command), "", "```", _usage(command, ctx), "```"]
        lines += _tables(command, ctx)
    return "\n".join(lines) + "\n"


def _walk(command: Any, ctx: typer.Context, depth: int) -> Iterator[tuple[int, Any, typer.Context]]:
    """The command, then each of its subcommands (depth first, in the order the app lists them)."""
    yield depth, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, typer.Context(sub, info_name=name, parent=ctx), depth + 1)


def _plain(text: str) -> str:
    """Help text without rich markup (typer reads help as rich markup when rich is in use)."""
    from typer.core import HAS_RICH

    return Text.from_markup(text).plain if HAS_RICH else text


def _description(command: Any) -> list[str]:
    text = inspect.cleandoc(command.help or "").partition("\f")[0]
    paragraphs = [" ".join(p.split()) for p in _plain(text).split("\n\n") if p.strip()]
    return "\n\n".join(paragraphs).splitlines()


def _usage(command: Any, ctx: typer.Context) -> str:
    return " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])


def _tables(command: Any, ctx: typer.Context) -> list[str]:
    """One table per help panel: arguments first, then the options, in the order --help shows them."""
    panels: dict[str, list[Any]] = {}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        default = "Arguments" if param.param_type_name == "argument" else "Options"
        panels.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(param)
    order = sorted(panels, key=lambda name: (name != "Arguments", name != "Options"))
    lines: list[str] = []
    for name in order:
        head = "Argument" if name == "Arguments" else "Option"
        lines += ["", f"**{name}**", "", f"| {head} | Env var | Default | Help |", "| --- | --- | --- | --- |"]
        lines += [_row(param) for param in panels[name]]
    return lines


def _row(param: Any) -> str:
    text = " ".join(_plain(getattr(param, "help", None) or "").split())
    envvar = getattr(param, "envvar", None)
    env = [envvar] if isinstance(envvar, str) else list(envvar or [])
    if found := _ENV.search(text):
        env.append(found.group(1))
    default = found.group(1) if (found := _DEFAULT.search(text)) else _default(param)
    text = _DEFAULT.sub("", _ENV.sub("", text)).strip()
    cells = [_names(param), ", ".join(f"`{e}`" for e in env), default, text]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _names(param: Any) -> str:
    if param.param_type_name == "argument":
        name = param.metavar or param.name.upper()
        return f"`{name}{'...' if param.nargs != 1 else ''}`"
    names = ", ".join(f"`{o}`" for o in param.opts)
    return names + "".join(f" / `{o}`" for o in param.secondary_opts)


def _default(param: Any) -> str:
    """The default --help would show, when the help text does not name it."""
    if param.required:
        return "required"
    shown = getattr(param, "show_default", None)
    if isinstance(shown, str):
        return shown
    value = param.default
    if shown is False or value is None or callable(value):
        return ""
    if getattr(param, "is_flag", False) and isinstance(value, bool):
        if not param.secondary_opts:
            return "on" if value else ""
        return f"`{param.opts[0] if value else param.secondary_opts[0]}`"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
