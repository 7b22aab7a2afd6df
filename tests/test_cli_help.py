"""Every command's --help at 80 columns: option names whole, serve's options in panels naming their environment
variables; `vlserve --version`; the generated CLI reference."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
import typer
import typer.main
import typer.rich_utils
from typer.testing import CliRunner

from vlserve.cli import app, reference
from vlserve.settings import Settings

runner = CliRunner()
NARROW = {"COLUMNS": "80", "TERMINAL_WIDTH": "80"}
SERVE_PANELS = ("Server", "Transformers engine", "vLLM engine", "Remote engine", "Limits")


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) for the app and every command and subcommand under it, groups included."""
    command = command or typer.main.get_command(app)
    yield path, command
    if hasattr(command, "list_commands"):
        ctx = typer.Context(command)
        for name in command.list_commands(ctx):
            yield from commands(command.get_command(ctx, name), (*path, name))


def long_names(command: Any) -> list[str]:
    return [
        name
        for param in command.params
        if param.param_type_name == "option" and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    ]


def render(args: list[str], monkeypatch: pytest.MonkeyPatch, columns: int = 80) -> str:
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", columns, raising=False)  # read from TERMINAL_WIDTH at import
    size = {"COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)}
    result = runner.invoke(app, [*args, "--help"], env=size, terminal_width=columns)
    assert result.exit_code == 0, result.output
    return result.output


ALL = list(commands())


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) or "vlserve" for p, _ in ALL])
def test_help_at_80_columns_keeps_every_option_name_whole(path, command, monkeypatch):
    output = render(list(path), monkeypatch)
    widths = [len(line) for line in output.splitlines()]
    assert max(widths) == 80, "rendered at 80 columns: the panels span the width, nothing is wider"
    first_cells = [line.split()[1:4] for line in output.splitlines()]  # after the border and a required mark
    for name in long_names(command):
        assert any(name in cells for cells in first_cells), f"{name} is cut or missing:\n{output}"


def test_serve_help_groups_the_options_in_panels(monkeypatch):
    output = render(["serve"], monkeypatch)
    titles = re.findall(r"╭─ (.+?) ─", output)
    assert [t for t in titles if t != "Options"] == list(SERVE_PANELS)


def test_every_serve_flag_names_its_environment_variable(monkeypatch):
    wide = render(["serve"], monkeypatch, columns=250)
    rows = [line.strip("│ ") for line in wide.splitlines() if line.strip("│ ").startswith("--")]
    named = set()
    for row in rows:
        if row.startswith("--help"):
            continue
        found = re.search(r"\[env var: VLSERVE_(\w+)\]", row)
        assert found, row
        assert found.group(1).lower() in Settings.model_fields, row
        named.add(f"VLSERVE_{found.group(1)}")
    assert {"VLSERVE_PORT", "VLSERVE_HOST", "VLSERVE_VLLM_GPU_MEMORY_UTILIZATION", "VLSERVE_UPSTREAM"} <= named
    narrow = render(["serve"], monkeypatch).replace("]", " ").split()
    assert named <= set(narrow), "each variable's name whole at 80 columns"


def test_a_flag_wins_over_its_environment_variable_and_a_bad_variable_is_one_line():
    bad = runner.invoke(app, ["serve"], env={"VLSERVE_PORT": "abc"})
    assert bad.exit_code == 2 and "invalid settings: port:" in bad.output and "Traceback" not in bad.output
    flag = runner.invoke(app, ["serve", "--port", "70000"], env={"VLSERVE_PORT": "abc"})
    assert flag.exit_code == 2 and "less than or equal to 65535" in flag.output, flag.output


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], None),
        (["--expert-parallel"], True),
        (["--no-expert-parallel"], False),
        (["--expert-parallel", "--no-expert-parallel"], False),
        (["--no-expert-parallel", "--port", "1", "--expert-parallel"], True),
    ],
)
def test_the_later_of_the_expert_parallel_flags_wins(flags, expected, monkeypatch):
    import vlserve.cli.serve

    seen = []

    def settings(**overrides: object) -> None:
        seen.append(overrides["vllm_expert_parallel"])
        raise typer.Exit(0)

    monkeypatch.setattr(vlserve.cli.serve, "load_settings", settings)
    assert runner.invoke(app, ["serve", *flags]).exit_code == 0
    assert seen == [expected]


def test_version_prints_the_installed_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"vlserve {version('vlserve')}\n"


def test_no_arguments_shows_the_help():
    result = runner.invoke(app, [])
    assert "serve" in result.output and "--version" in result.output


def test_the_reference_covers_every_command_and_option():
    page = reference.markdown()
    assert "\x1b" not in page and "[/" not in page
    for path, command in ALL:
        if path:
            assert re.search(rf"^##+ vlserve {' '.join(path)}$", page, re.M), path
        for name in long_names(command):
            assert f"`{name}`" in page, name
    serve = page.split("## vlserve serve", 1)[1].split("\n## ", 1)[0]
    assert "| `--port` | `VLSERVE_PORT` | 8080 | Port. |" in serve
    for panel in SERVE_PANELS:
        assert f"**{panel}**" in serve
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert all(line.count(" | ") == 3 for line in rows), "four cells a row: a | in a cell is escaped"
