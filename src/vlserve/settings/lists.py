"""How a list setting is read from its environment variable: a JSON list, or comma-separated."""

from __future__ import annotations

import json


def split_list(value: object) -> object:
    """``'["a", "b"]'`` or ``"a, b"`` as a list of strings; anything else (a list given in Python) unchanged."""
    if isinstance(value, str):
        if value.strip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]
    return value
