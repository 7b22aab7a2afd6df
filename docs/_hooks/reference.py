"""The reference pages, generated from the code so that they cannot drift from it, and the mkdocs hook that adds
the changelog to the site.

- docs/reference/configuration.md: every VLSERVE_* setting, from the settings classes;
- docs/reference/cli.md: every command and option, from the typer app;
- docs/reference/api.md: every route and schema, from the app's OpenAPI schema.

They are committed (so that they read on GitHub and in a checkout too) and rewritten by `make reference`
(`python docs/_hooks/reference.py`); `--check` fails on a stale one, and the test suite runs it.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


def on_files(files, config):
    """mkdocs hook: changelog.md in the site, from CHANGELOG.md, its links into docs/ made relative to the site."""
    from mkdocs.structure.files import File

    text = re.sub(r"\]\(docs/", "](", (ROOT / "CHANGELOG.md").read_text())
    files.append(File.generated(config, "changelog.md", content=text))
    return files


def pages() -> dict[str, str]:
    """Each reference page's file name and text, as a server with no VLSERVE_* variable set documents itself."""
    for name in [n for n in os.environ if n.startswith("VLSERVE_")]:
        del os.environ[name]
    sys.path.insert(0, str(Path(__file__).parent))
    from openapi_markdown import render

    from vlserve.cli.reference import markdown as cli_markdown
    from vlserve.settings.reference import markdown as settings_markdown

    return {"configuration.md": settings_markdown(), "cli.md": cli_markdown(), "api.md": render(_openapi())}


def _openapi() -> dict:
    """The schema a default server publishes (auth, engine and database make no difference to it)."""
    from vlserve.app import build_app
    from vlserve.settings import Settings

    with tempfile.TemporaryDirectory() as data:
        return build_app(Settings(data_dir=Path(data))).openapi()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail, with a diff, if a committed page is stale")
    args = parser.parse_args()
    stale = []
    for name, text in pages().items():
        path = REFERENCE / name
        current = path.read_text() if path.is_file() else ""
        if current == text:
            continue
        if args.check:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(path), "generated", lineterm="")
            stale.append("\n".join(list(diff)[:40]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale reference pages: run `make reference`\n" + "\n".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
