"""The shell commands a Markdown document shows, so the tests can check them against the files they name."""

from __future__ import annotations

import re
import shlex


def bash_commands(text: str) -> list[list[str]]:
    """The shell words of each command in the text's ```bash blocks: continuation lines joined, comments and
    blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands
