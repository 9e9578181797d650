"""API keys of `rag serve`: a bearer token per key, mapped to one user; only the token's SHA-256 is stored.

``keys.json`` sits in the index directory beside CURRENT (no generation owns it, so re-indexing keeps it), readable
by its owner only (0600). Each record is ``{"id", "user", "sha256", "created", "expires", "revoked"}``. The server
re-reads the file when it changes on disk, so ``rag keys revoke`` takes effect on the next request, no restart.

A token is ``rag_`` + 32 random bytes (secrets.token_urlsafe): unguessable, so one unsalted SHA-256 is enough (a
salt or a slow hash protects low-entropy passwords, not random keys), and lookups are one hash per request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.common import UsageError

KEYS_FILE = "keys.json"
TOKEN_PREFIX = "rag_"
# User names become principals (user:NAME) and policy entries: no spaces, colons or commas.
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class ApiKey:
    id: str
    user: str
    sha256: str
    created: str
    expires: str | None = None
    revoked: str | None = None

    def state(self, now: datetime) -> str:
        if self.revoked:
            return "revoked"
        if self.expires and datetime.fromisoformat(self.expires) <= now:
            return "expired"
        return "active"

    def public(self, now: datetime) -> dict:
        """What `rag keys list` shows: everything but the hash."""
        fields = asdict(self)
        del fields["sha256"]
        return fields | {"state": self.state(now)}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The keys of one index directory. Safe to share between threads; re-reads the file when it changes."""

    def __init__(self, index_dir: Path) -> None:
        self.path = Path(index_dir) / KEYS_FILE
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._keys: list[ApiKey] = []

    # --- administration (the `rag keys` commands) ----------------------------------------------------------
    def add(self, user: str, expires_days: float | None = None) -> tuple[ApiKey, str]:
        """A new key for ``user``; returns it with its token, which is never stored and cannot be shown again."""
        if not _USER.match(user or ""):
            raise UsageError(
                f"user name {user!r} is not valid; use letters, digits and . _ @ - (no spaces or colons), "
                "as the permission policy names users"
            )
        if expires_days is not None and expires_days <= 0:
            raise UsageError(f"--expires-days must be positive, got {expires_days}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = _now()
        key = ApiKey(
            id=secrets.token_hex(4),
            user=user,
            sha256=token_hash(token),
            created=now.isoformat(timespec="seconds"),
            expires=(now + timedelta(days=expires_days)).isoformat(timespec="seconds") if expires_days else None,
        )
        with self._writing() as keys:
            keys.append(key)
        return key, token

    def list(self) -> list[dict]:
        now = _now()
        return [key.public(now) for key in self._load()]

    def revoke(self, key_id: str) -> ApiKey:
        with self._writing() as keys:
            for i, key in enumerate(keys):
                if key.id == key_id:
                    if not key.revoked:
                        keys[i] = key = ApiKey(**(asdict(key) | {"revoked": _now().isoformat(timespec="seconds")}))
                    return key
        known = ", ".join(k.id for k in self._load()) or "none; add one with `rag keys add USER`"
        raise UsageError(f"no key with id {key_id!r} (known ids: {known})")

    # --- authentication (the server) -------------------------------------------------------------------------
    def user_for(self, token: str) -> str | None:
        """The user of an active key whose token this is, else None. Every stored hash is compared, in constant
        time, whatever matches: the time taken says nothing about which keys exist."""
        digest = token_hash(token)
        now = _now()
        found = None
        for key in self._load():
            if hmac.compare_digest(key.sha256, digest) and key.state(now) == "active":
                found = key.user
        return found

    # --- the file --------------------------------------------------------------------------------------------
    def _load(self) -> list[ApiKey]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._seen, self._keys = None, []
                return []
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if seen != self._seen:
                self._keys = [ApiKey(**record) for record in json.loads(self.path.read_text())["keys"]]
                self._seen = seen
            return list(self._keys)

    @contextlib.contextmanager
    def _writing(self):
        """Read, change and atomically replace the file under an exclusive lock (two `rag keys` at once)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(KEYS_FILE + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._load()
            yield keys
            staging = self.path.with_name(KEYS_FILE + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
            with os.fdopen(fd, "w") as handle:
                json.dump({"keys": [asdict(key) for key in keys]}, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, self.path)


def _now() -> datetime:
    return datetime.now(UTC)
