"""The configuration reference page, generated from the settings: one table per group of ``SETTING_GROUPS``."""

from __future__ import annotations

from pydantic.fields import FieldInfo

from vlserve.settings import SETTING_GROUPS

INTRO = """\
# Configuration reference

Every setting is an environment variable `VLSERVE_<NAME>`, read when the server starts and checked then: a wrong
value stops the start with a message naming the setting, and a misspelt name is ignored. `vlserve serve` flags
override the settings they name. Booleans are `true` or `false` (`1` and `0` work too); a list is comma-separated
or a JSON list, as its row says; sizes are in bytes and durations in seconds unless the name says otherwise.
"""


def _cell(text: str) -> str:
    """Text that stays inside one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def _size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f" ({value // size} {unit})"
    return ""


def default_text(name: str, field: FieldInfo) -> str:
    """The default of a setting as a user reads it: the field's own wording where it gives one, else the value."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "default_text" in extra:
        return str(extra["default_text"])
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return f"`{','.join(str(item) for item in value)}`" if value else "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and name.endswith("_bytes"):
        return f"`{value}`{_size(value)}"
    return f"`{value}`"


def markdown() -> str:
    """The whole page: the introduction, then per group a heading, its summary and a table of its settings."""
    parts = [INTRO]
    for title, group in SETTING_GROUPS:
        parts.append(f"\n## {title}\n")
        if group.__doc__:
            parts.append("\n" + " ".join(group.__doc__.split()) + "\n")
        parts.append("\n| variable | default | meaning |\n|---|---|---|\n")
        for name, field in group.model_fields.items():
            variable = f"`VLSERVE_{name.upper()}`"
            parts.append(f"| {variable} | {_cell(default_text(name, field))} | {_cell(field.description or '')} |\n")
    return "".join(parts)
