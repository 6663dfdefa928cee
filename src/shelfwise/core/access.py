"""Who may do what: API keys with roles, and short-lived tokens scoped to one shopper.

Roles follow scoped API keys as search services issue them (Algolia's "search-only" and "admin"
keys): ``read`` sees personal answers (a shopper's recommendations, personalised search),
``write`` sends events and catalogue changes, ``analyst`` opens the analytics pages, ``admin``
manages models, deletion and keys and implies every other role.

Only a key's sha256 is kept (``var/keys.json``), so the file leaks no usable key. The ring re-reads
the file when it changes, so a key created or revoked by ``shelfwise keys`` takes effect in a
running server without a restart. Writes go through a lock file and an atomic rename, so two
processes creating keys at once lose neither.

A shopper token is ``v1.<shopper, base64url>.<expiry, unix seconds>.<HMAC-SHA256, base64url>``:
the server signs it with a secret kept in ``var/token.key``; it names one shopper and expires.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from shelfwise.core.errors import ConfigError


class Role(StrEnum):
    READ = "read"
    WRITE = "write"
    ANALYST = "analyst"
    ADMIN = "admin"


def role_allows(have: Role | None, need: Role) -> bool:
    """Whether a credential holding ``have`` may do what needs ``need`` (admin implies every role)."""
    return have is not None and (have is Role.ADMIN or have is need)


def hash_key(key: str) -> str:
    """What is stored for a key: its sha256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """The secret in ``path``, created once with mode 0600. Two processes starting at once both
    end up with the same secret: the content is written to a private temporary file first and
    linked into place (a link never replaces an existing file), so no reader sees a half-written
    file and the loser of the race reads the winner's secret."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    role: Role
    sha256: str
    created_ms: int
    name: str = ""
    revoked_ms: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None

    def public(self) -> dict[str, object]:
        """What ``keys list`` shows: never the hash."""
        out = asdict(self)
        out.pop("sha256")
        out["role"] = str(self.role)
        return out


class UnknownKeyError(LookupError):
    """A key id that names no key."""


class KeyRing:
    """API keys with roles, kept as sha256 digests in a JSON file.

    ``fixed`` maps digests configured outside the file (``SHELFWISE_API_KEY_HASHES``, the key
    ``serve`` creates in ``var/api.key``) to their role; they cannot be revoked here."""

    def __init__(self, path: Path, fixed: dict[str, Role] | None = None) -> None:
        self.path = path
        self.fixed = {h.strip().lower(): r for h, r in (fixed or {}).items() if h.strip()}
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._loaded = False
        self._records: list[KeyRecord] = []
        self._by_hash: dict[str, Role] = {}
        self._candidates: tuple[tuple[str, Role], ...] = tuple(self.fixed.items())

    # --- reading -------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._loaded and stamp == self._stamp:
            return
        records = self._read() if stamp is not None else []
        self._records = records
        self._by_hash = {r.sha256: r.role for r in records if r.active}
        self._candidates = tuple({**self.fixed, **self._by_hash}.items())
        self._stamp, self._loaded = stamp, True

    def _read(self) -> list[KeyRecord]:
        try:
            raw = json.loads(self.path.read_text() or "[]")
            return [
                KeyRecord(
                    id=str(r["id"]),
                    role=Role(r["role"]),
                    sha256=str(r["sha256"]),
                    created_ms=int(r["created_ms"]),
                    name=str(r.get("name", "")),
                    revoked_ms=None if r.get("revoked_ms") is None else int(r["revoked_ms"]),
                )
                for r in raw
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the key file {self.path} is not valid: {exc}", hint="restore it or delete it"
            ) from exc

    def role_of(self, key: str | None) -> Role | None:
        """The role a presented key holds, or None (unknown, revoked or empty)."""
        found = self.identify(key)
        return found[1] if found is not None else None

    def identify(self, key: str | None) -> tuple[str, Role] | None:
        """(key id, role) of a presented key, or None (unknown, revoked or empty). Digests are
        compared in constant time against every configured one, so timing tells nothing about near
        misses. The id is the digest's first 12 hex digits, as ``keys list`` shows it."""
        if not key:
            return None
        digest = hash_key(key)
        with self._lock:
            self._load()
            candidates = self._candidates
        found: tuple[str, Role] | None = None
        for h, role in candidates:
            if hmac.compare_digest(digest, h):
                found = (h[:12], role)
        return found

    def records(self) -> list[KeyRecord]:
        with self._lock:
            self._load()
            return list(self._records)

    # --- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[KeyRecord]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lockfile:
            fcntl.flock(lockfile, fcntl.LOCK_EX)
            records = self._read() if self.path.exists() else []
            yield records
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump([{**asdict(r), "role": str(r.role)} for r in records], fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        with self._lock:
            self._loaded = False

    def create(self, role: Role, name: str = "") -> tuple[str, KeyRecord]:
        """A new key (shown once) and its record."""
        key = f"sw_{role}_{secrets.token_urlsafe(24)}"
        digest = hash_key(key)
        record = KeyRecord(
            id=digest[:12], role=role, sha256=digest, created_ms=int(time.time() * 1000), name=name
        )
        with self._locked() as records:
            records.append(record)
        return key, record

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke by id; revoking twice keeps the first time."""
        with self._locked() as records:
            for i, r in enumerate(records):
                if r.id == key_id:
                    if r.revoked_ms is None:
                        records[i] = KeyRecord(**{**asdict(r), "revoked_ms": int(time.time() * 1000)})
                    return records[i]
        raise UnknownKeyError(f"no key with id {key_id!r}")


class TokenError(ValueError):
    """A shopper token that is malformed, forged or expired (the message says which)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ShopperTokens:
    """Issues and checks tokens that let a browser act as exactly one shopper, for a short time."""

    PREFIX = "v1"

    def __init__(self, secret: bytes, *, ttl_s: int = 3600) -> None:
        if len(secret) < 16:
            raise ConfigError("the shopper-token secret is too short", hint="use at least 16 bytes")
        self.secret, self.ttl_s = secret, ttl_s

    @classmethod
    def from_dir(cls, var_dir: Path, *, ttl_s: int = 3600) -> ShopperTokens:
        secret = create_secret_file(var_dir / "token.key", lambda: secrets.token_hex(32))
        return cls(secret.encode(), ttl_s=ttl_s)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.secret, body.encode(), hashlib.sha256).digest())

    def issue(self, shopper: str, *, ttl_s: int | None = None, now: float | None = None) -> tuple[str, int]:
        """(token, expiry in unix seconds)."""
        expires = int((time.time() if now is None else now) + (self.ttl_s if ttl_s is None else ttl_s))
        body = f"{self.PREFIX}.{_b64(shopper.encode('utf-8'))}.{expires}"
        return f"{body}.{self._sign(body)}", expires

    def verify(self, token: str, *, now: float | None = None) -> str:
        """The shopper a token names; TokenError when it is malformed, forged or expired."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != self.PREFIX or not parts[2].isdigit():
            raise TokenError("malformed shopper token")
        body = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(body), parts[3]):
            raise TokenError("shopper token signature does not match")
        if int(parts[2]) < (time.time() if now is None else now):
            raise TokenError("shopper token expired")
        try:
            return _unb64(parts[1]).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenError("malformed shopper token") from exc


def fixed_roles(hashes: Iterable[str], role: Role = Role.ADMIN) -> dict[str, Role]:
    """Digests configured outside the key file, all holding ``role``."""
    return {h.strip().lower(): role for h in hashes if h.strip()}
