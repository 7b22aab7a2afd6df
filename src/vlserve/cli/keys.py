"""`vlserve keys create|secret|list|revoke` and `vlserve audit`: API keys and the audit trail in the database.

They use the database a server with the same settings uses (VLSERVE_DATABASE_URL, else the SQLite file in
the data directory), migrating it first, so the first key can be made before the first start.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vlserve.cli.common import JsonOpt, console, fail, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

    from vlserve.settings import Settings
    from vlserve.store.models import ApiKey, AuditRecord

app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_LIMIT_LABELS = {
    "requests_per_minute": "{} requests/min",
    "concurrent_requests": "{} at once",
    "tokens_per_day": "{} tokens/day",
}
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@contextlib.contextmanager
def database() -> Iterator[tuple[Settings, sessionmaker]]:
    """The settings, and sessions on their database, migrated; one line and exit 1 when it cannot be used."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from vlserve.store.db import make_engine, make_sessions, migrate

    settings = load_settings()
    url = settings.database()
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        migrate(url)
        engine = make_engine(url)
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, read-only: one line, not a traceback
        raise fail(f"cannot open the database {shown}: {_first_line(exc)}") from None
    try:
        yield settings, make_sessions(engine)
    except SQLAlchemyError as exc:
        raise fail(f"database {shown}: {_first_line(exc)}") from None
    finally:
        engine.dispose()


def _show(table: Table) -> None:
    """Print a table on stdout: the terminal's width, or wide enough not to fold when piped to a file or grep."""
    Console(width=None if sys.stdout.isatty() else 240).print(table)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def _when(value: datetime | None, empty: str = "-") -> str:
    from vlserve.store.db import as_utc

    return empty if value is None else f"{as_utc(value):%Y-%m-%d %H:%M:%S}"


def _iso(value: datetime | None) -> str | None:
    from vlserve.store.db import as_utc

    return None if value is None else as_utc(value).isoformat()


def _limits(row: ApiKey) -> dict[str, int | None]:
    return {
        "requests_per_minute": row.requests_per_minute,
        "concurrent_requests": row.concurrent_requests,
        "tokens_per_day": row.tokens_per_day,
    }


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the key is for (a person, a service).")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: chat, documents, metrics, admin.")] = "chat,documents",
    expires: Annotated[
        float | None, typer.Option(help="Days until the key stops working \\[default: never].", show_default=False)
    ] = None,
    requests_per_minute: Annotated[
        int | None, typer.Option(help="0: no limit \\[default: the server's].", show_default=False)
    ] = None,
    concurrent: Annotated[
        int | None, typer.Option(help="Requests at once; 0: no limit \\[default: the server's].", show_default=False)
    ] = None,
    tokens_per_day: Annotated[
        int | None, typer.Option(help="0: no limit \\[default: the server's].", show_default=False)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON line: id, name, key (the secret), scopes, expires_at, limits.")
    ] = False,
) -> None:
    """Create a key. Its secret is printed once, now: it is stored only as a hash."""
    from vlserve.errors import ClientError
    from vlserve.security.keys import KeyStore

    with database() as (settings, sessions):
        store = KeyStore(sessions, settings)
        try:
            row, secret = store.create(
                name,
                scopes=scopes.split(","),
                expires_days=expires,
                requests_per_minute=requests_per_minute,
                concurrent_requests=concurrent,
                tokens_per_day=tokens_per_day,
            )
        except ClientError as exc:
            raise fail(exc.message, 2) from None
    if as_json:
        body = {"id": row.id, "name": row.name, "key": secret, "scopes": row.scopes.split(",")}
        print(json.dumps({**body, "expires_at": _iso(row.expires_at), **_limits(row)}))
        return
    expiry = "never" if row.expires_at is None else _when(row.expires_at) + " UTC"
    console.print(f"created {row.id} ({escape(row.name)}): scopes {row.scopes}, expires {expiry}", highlight=False)
    print(secret)
    console.print("[yellow]this key is shown once and cannot be shown again: store it now[/yellow]")


@app.command("secret")
def secret() -> None:
    """Print a fresh key secret and store nothing: a value for VLSERVE_ADMIN_KEY (a deployment's first key)."""
    from vlserve.security.keys import new_secret

    print(new_secret())


@app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """Every key: id, name, prefix, scopes, dates and limits (never the secret)."""
    from vlserve.security.keys import KeyStore

    with database() as (settings, sessions):
        rows = KeyStore(sessions, settings).list()
    if as_json:
        for row in rows:
            body = {"id": row.id, "name": row.name, "prefix": row.prefix, "scopes": row.scopes.split(",")}
            dates = {
                "created_at": _iso(row.created_at), "expires_at": _iso(row.expires_at),
                "revoked_at": _iso(row.revoked_at), "last_used_at": _iso(row.last_used_at),
            }  # fmt: skip
            print(json.dumps({**body, **dates, **_limits(row)}))
        return
    if not rows:
        console.print("no keys yet: create one with `vlserve keys create NAME`")
        return
    table = Table("id", "name", "prefix", "scopes", "created", "expires", "revoked", "last used", "limits")
    for row in rows:
        limits = ", ".join(_LIMIT_LABELS[k].format(v) for k, v in _limits(row).items() if v is not None)
        table.add_row(
            row.id, escape(row.name), row.prefix + "…", row.scopes, _when(row.created_at),
            _when(row.expires_at, "never"), _when(row.revoked_at), _when(row.last_used_at), limits or "server defaults",
        )  # fmt: skip
    _show(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (key_…), as `keys list` shows.")],
) -> None:
    """Revoke a key for good: requests with it get 401 (within seconds on running servers)."""
    from vlserve.security.keys import KeyStore

    with database() as (settings, sessions):
        if not KeyStore(sessions, settings).revoke(key_id):
            raise fail(f"no key {key_id!r} (see `vlserve keys list`)")
    console.print(f"revoked {escape(key_id)}", highlight=False)


def parse_since(text: str, now: datetime) -> datetime:
    """``2026-11-01``, ``2026-11-01T08:00``, or a time ago: ``30m``, ``1h``, ``7d``, ``2w``; as UTC."""
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r} is neither a date (2026-11-01) nor a time ago (30m, 1h, 7d)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _record(row: AuditRecord) -> dict[str, Any]:
    body = {
        "at": _iso(row.at), "key_id": row.key_id, "method": row.method, "endpoint": row.endpoint,
        "model": row.model, "status": row.status, "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens, "latency_ms": row.latency_ms, "trace_id": row.trace_id,
        "client": row.client, "image_hashes": json.loads(row.image_hashes) if row.image_hashes else [],
        "resource": row.resource, "count": row.count or 1,
    }  # fmt: skip
    if row.content_json:
        body["content"] = json.loads(row.content_json)
    return body


def audit_command(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Newest records to show.")] = 50,
    key: Annotated[str | None, typer.Option(help="Only this key's requests (key_…).", show_default=False)] = None,
    since: Annotated[
        str | None, typer.Option(help="From a date (2026-11-01) or a time ago (1h, 7d) on.", show_default=False)
    ] = None,
    resource: Annotated[
        str | None,
        typer.Option(help="Only what touched this document job (doc_…): its requests and pages.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit trail, newest first: who called which endpoint or read which page, status, tokens, latency, trace id.

    Requests refused without a valid key are tallied per client and minute (the count column).
    """
    from vlserve.security.audit import AuditStore

    try:
        start = None if since is None else parse_since(since, datetime.now(UTC))
    except (ValueError, OverflowError) as exc:
        raise fail(str(exc), 2) from None
    with database() as (_, sessions):
        rows = AuditStore(sessions).query(limit=limit, key_id=key, since=start, resource=resource)
    if as_json:
        for row in rows:
            print(json.dumps(_record(row), ensure_ascii=False))
        return
    if not rows:
        console.print("no audit records match")
        return
    table = Table(
        "time (UTC)", "key", "method", "endpoint", "resource", "status", "count", "model", "tokens", "ms", "trace id",
        "client",
    )  # fmt: skip
    for row in rows:
        tokens = "" if row.prompt_tokens is None else f"{row.prompt_tokens}+{row.completion_tokens or 0}"
        table.add_row(
            _when(row.at), row.key_id or "-", row.method, escape(row.endpoint), escape(row.resource or ""),
            str(row.status), str(row.count or 1), escape(row.model or ""), tokens, str(row.latency_ms), row.trace_id,
            row.client or "",
        )  # fmt: skip
    _show(table)
