"""`python -m vlserve.cli …`: the `vlserve` command."""

from vlserve.cli import app

app()
