"""API keys in the database: create, list, revoke, and check a secret a request presents.

A secret is ``vlsk_`` + 32 random bytes (URL-safe base64). Only its SHA-256 is stored: a secret that
random needs no slow hash, and the lookup by hash is then confirmed with a constant-time comparison.
Checks run in a worker thread and are cached for :data:`CACHE_SECONDS`, so a burst of requests with one
key costs one query; a revocation made by another process therefore bites within that time (at once in
the process that revoked it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from vlserve.errors import AuthenticationError, ClientError
from vlserve.security.principal import DEFAULT_SCOPES, SCOPES, Principal
from vlserve.settings import Settings
from vlserve.store.db import as_utc, utcnow
from vlserve.store.models import ApiKey

log = logging.getLogger("vlserve.security")

SECRET_PREFIX = "vlsk_"
CACHE_SECONDS = 5.0  # how long a checked key is trusted before the database is asked again
LAST_USED_EVERY_S = 60.0  # last_used_at is written at most this often per key
_CACHE_SIZE = 4096
_MAX_SECRET_CHARS = 100  # ours are 48


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_scopes(scopes: Sequence[str] | str) -> tuple[str, ...]:
    """Scopes as given (a list or "chat,documents"), checked against the known ones; order kept, no repeats."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    parsed: list[str] = []
    for item in (s.strip().lower() for s in items):
        if not item:
            continue
        if item not in SCOPES:
            raise ClientError(f"unknown scope {item!r}; scopes are {', '.join(SCOPES)}", param="scopes")
        if item not in parsed:
            parsed.append(item)
    if not parsed:
        raise ClientError(f"a key needs at least one scope ({', '.join(SCOPES)})", param="scopes")
    return tuple(parsed)


def _check_form(secret: str) -> None:
    if not secret.startswith(SECRET_PREFIX) or len(secret) > _MAX_SECRET_CHARS:
        raise AuthenticationError(f"invalid API key: not a vlserve key (those start with {SECRET_PREFIX})")


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise ClientError(f"{name} must be 0 (no limit) or more, got {value}", param=name)


class KeyStore:
    def __init__(self, sessions: sessionmaker, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal, datetime | None]] = {}  # hash → (checked at, who, expiry)
        self._last_used: dict[str, float] = {}

    # --- administration (the CLI) ------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        expires_days: float | None = None,
        requests_per_minute: int | None = None,
        concurrent_requests: int | None = None,
        tokens_per_day: int | None = None,
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (a fresh one unless given); the secret is not stored and cannot be shown
        again."""
        name = name.strip()
        if not name or len(name) > 128:
            raise ClientError("a key needs a name of 1 to 128 characters", param="name")
        if expires_days is not None and not expires_days > 0:
            raise ClientError(f"expires must be a positive number of days, got {expires_days}", param="expires")
        limits = {
            "requests_per_minute": requests_per_minute,
            "concurrent_requests": concurrent_requests,
            "tokens_per_day": tokens_per_day,
        }
        for limit, value in limits.items():
            _check_limit(limit, value)
        secret = secret or new_secret()
        now = utcnow()
        row = ApiKey(
            id=f"key_{uuid.uuid4().hex[:12]}",
            name=name,
            prefix=secret[:12],
            secret_hash=hash_secret(secret),
            scopes=",".join(parse_scopes(scopes)),
            created_at=now,
            expires_at=None if expires_days is None else now + timedelta(days=expires_days),
            **limits,
        )
        with self._sessions.begin() as session:
            session.add(row)
        return row, secret

    def ensure(self, name: str, secret: str, *, scopes: Sequence[str]) -> tuple[ApiKey, bool]:
        """The key holding ``secret``, created with ``name`` and ``scopes`` if no key holds it yet; and whether
        it was created. An existing key is left as it is, revoked or not. Replicas starting together on one
        database are safe: the loser of the insert finds the winner's row."""
        digest = hash_secret(secret)
        existing = self._by_hash(digest)
        if existing is not None:
            return existing, False
        try:
            return self.create(name, scopes=scopes, secret=secret)[0], True
        except IntegrityError:  # another server inserted the same secret first
            existing = self._by_hash(digest)
            if existing is None:
                raise
            return existing, False

    def _by_hash(self, digest: str) -> ApiKey | None:
        with self._sessions() as session:
            return session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))

    def list(self) -> list[ApiKey]:
        with self._sessions() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))

    def get(self, key_id: str) -> ApiKey | None:
        with self._sessions() as session:
            return session.get(ApiKey, key_id)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key (for good); False when there is no such key. Revoking twice keeps the first time."""
        with self._sessions.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                return False
            if row.revoked_at is None:
                session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
        with self._lock:  # in this process, at once; in others, once their cache entry is older than CACHE_SECONDS
            for cached, (_, principal, _) in list(self._cache.items()):
                if principal.key_id == key_id:
                    del self._cache[cached]
        return True

    # --- requests ------------------------------------------------------------------------------------
    def authenticate(self, secret: str) -> Principal:
        """Who holds ``secret``; AuthenticationError saying why not (unknown, revoked or expired)."""
        return self._check(secret)[0]

    async def verify(self, secret: str) -> Principal:
        """:meth:`authenticate` for the event loop: from the cache when fresh, else in a worker thread."""
        _check_form(secret)  # junk never reaches the database
        digest = hash_secret(secret)
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None:
            checked, principal, expires = hit
            if time.monotonic() - checked < CACHE_SECONDS and (expires is None or utcnow() < expires):
                return principal
        principal, expires = await asyncio.to_thread(self._check, secret)
        with self._lock:
            self._cache.pop(digest, None)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))  # the oldest entry
            self._cache[digest] = (time.monotonic(), principal, expires)
        return principal

    def _check(self, secret: str) -> tuple[Principal, datetime | None]:
        _check_form(secret)
        digest = hash_secret(secret)
        row = self._by_hash(digest)
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            raise AuthenticationError("invalid API key: no such key (check the Authorization: Bearer header)")
        if row.revoked_at is not None:
            raise AuthenticationError(
                f"API key {row.id} was revoked on {as_utc(row.revoked_at):%Y-%m-%d %H:%M} UTC", key_id=row.id
            )
        expires = as_utc(row.expires_at)
        if expires is not None and expires <= utcnow():
            raise AuthenticationError(f"API key {row.id} expired on {expires:%Y-%m-%d %H:%M} UTC", key_id=row.id)
        self._touch(row.id)
        return self._principal(row), expires

    def principal(self, key_id: str) -> Principal | None:
        """The key's Principal with its limits resolved (its own, else the server's defaults); None if unknown."""
        row = self.get(key_id)
        return None if row is None else self._principal(row)

    def _principal(self, row: ApiKey) -> Principal:
        s = self._settings

        def limit(own: int | None, default: int) -> int:
            return default if own is None else own

        return Principal(
            key_id=row.id,
            name=row.name,
            scopes=frozenset(row.scopes.split(",")),
            requests_per_minute=limit(row.requests_per_minute, s.default_requests_per_minute),
            concurrent_requests=limit(row.concurrent_requests, s.default_concurrent_requests),
            tokens_per_day=limit(row.tokens_per_day, s.default_tokens_per_day),
        )

    def _touch(self, key_id: str) -> None:
        """Record that the key was used, at most once a minute per key and process."""
        now = time.monotonic()
        with self._lock:
            last = self._last_used.get(key_id)
            if last is not None and now - last < LAST_USED_EVERY_S:
                return
            self._last_used[key_id] = now
        try:
            with self._sessions.begin() as session:
                session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
        except SQLAlchemyError as exc:  # a busy database costs the bookkeeping, never the request
            log.warning("recording the use of API key %s failed: %s", key_id, exc)


ADMIN_KEY_NAME = "admin (VLSERVE_ADMIN_KEY)"


def ensure_admin_key(keys: KeyStore, settings: Settings) -> ApiKey | None:
    """Store the deployment's VLSERVE_ADMIN_KEY, with every scope, unless a key with that secret exists.

    A key that was revoked or has expired stays so: the log says to set a new secret."""
    if settings.admin_key is None:
        return None
    row, created = keys.ensure(ADMIN_KEY_NAME, settings.admin_key.get_secret_value(), scopes=SCOPES)
    if created:
        log.info("stored VLSERVE_ADMIN_KEY as admin key %s (%s…)", row.id, row.prefix)
    elif row.revoked_at is not None:
        log.warning("VLSERVE_ADMIN_KEY is key %s, which was revoked; it stays revoked: set a new secret", row.id)
    return row
