"""Who may open a page: an API key with a role (the ``X-API-Key`` header, for automation) or a
signed-in page session (a cookie set by ``/sign-in``).

The session cookie is ``v1.<session id>.<role>.<key id>.<expiry>.<HMAC-SHA256>``, signed with a
secret kept in ``var/session.key``. It never holds the key: only the id of the key that signed in
(its sha256 prefix, as ``shelfwise keys list`` shows it), so revoking that key ends its sessions at
the next request. The cookie is HttpOnly (no script reads it), SameSite=Strict (another site's page
never sends it) and Secure on https.

Every unsafe request (POST, PUT, DELETE) made with a session must carry the session's CSRF token —
an HMAC of the session id — in ``X-CSRF-Token`` or a ``csrf_token`` form field, and an ``Origin``,
when the browser sends one, must be this site. A request with an API key needs neither: a key is
not something a browser attaches on its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from shelfwise.core.access import Role, create_secret_file, hash_key, role_allows
from shelfwise.core.logging import get_logger

log = get_logger(__name__)

COOKIE = "shelfwise_session"
SIGN_IN_COOKIE = "shelfwise_sign_in"  # the sign-in form's own CSRF token (no session yet)
API_KEY_HEADER = "x-api-key"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's credential: its role, and whether it came as a key or a page session."""

    role: Role
    via: Literal["key", "session"]
    session: PageSession | None = None


@dataclass(frozen=True, slots=True)
class PageSession:
    sid: str
    role: Role
    key_id: str
    expires: int
    csrf: str


class AccessDenied(Exception):
    """Raised by a page's credential check; ``mount_pages`` turns it into a redirect to the sign-in
    page (a page a person opened) or a JSON answer (401 no credential, 403 not enough)."""

    def __init__(self, status: int, error: str, detail: str, *, page: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.page = status, error, detail, page

    def payload(self) -> dict[str, str]:
        return {"error": self.error, "detail": self.detail}


def key_id(key: str) -> str:
    """The id ``KeyRing`` gives a key: the first 12 hex digits of its sha256."""
    return hash_key(key)[:12]


def ring_role_of_id(ring: Any) -> Callable[[str], Role | None]:
    """For a ``KeyRing``: the role the key with this id holds now (None when revoked or unknown)."""

    def role_of_id(kid: str) -> Role | None:
        for digest, role in ring.fixed.items():
            if digest[:12] == kid:
                return Role(role)
        for record in ring.records():
            if record.id == kid and record.active:
                return Role(record.role)
        return None

    return role_of_id


class PageAccess:
    """Checks page credentials and issues page sessions. Thread-safe."""

    def __init__(
        self,
        secret: bytes,
        *,
        role_of_key: Callable[[str | None], Role | None],
        role_of_key_id: Callable[[str], Role | None],
        ttl_s: int = 8 * 3600,
        signed_out_file: Path | None = None,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the page-session secret is too short (use at least 16 bytes)")
        self.secret, self.ttl_s = secret, ttl_s
        self.role_of_key, self.role_of_key_id = role_of_key, role_of_key_id
        # session id -> expiry, kept until the session would have expired anyway; with a file, every
        # process sharing it (replicas over one var/) refuses a session signed out in any of them
        self._signed_out: dict[str, int] | None = {}
        self._signed_out_file = signed_out_file
        self._signed_out_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_ring(cls, ring: Any, var_dir: Path, *, ttl_s: int = 8 * 3600) -> PageAccess:
        """Over a ``KeyRing``, with the session secret in ``var_dir/session.key`` (created once, 0600;
        every replica sharing ``var_dir`` accepts the others' sessions)."""
        secret = create_secret_file(var_dir / "session.key", lambda: secrets.token_hex(32))
        return cls(
            secret.encode(),
            role_of_key=ring.role_of,
            role_of_key_id=ring_role_of_id(ring),
            ttl_s=ttl_s,
            signed_out_file=var_dir / "sessions-signed-out.json",
        )

    # --- sessions ------------------------------------------------------------------------------
    def _sign(self, body: str) -> str:
        return hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()

    def _csrf(self, sid: str) -> str:
        return hmac.new(self.secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def sign_in(self, key: str, *, now: float | None = None) -> tuple[str, PageSession] | None:
        """(cookie value, session) for a key that holds a role; None for any other key."""
        role = self.role_of_key(key)
        if role is None:
            return None
        sid = secrets.token_urlsafe(18)
        expires = int((time.time() if now is None else now) + self.ttl_s)
        body = f"v1.{sid}.{role}.{key_id(key)}.{expires}"
        session = PageSession(sid=sid, role=role, key_id=key_id(key), expires=expires, csrf=self._csrf(sid))
        return f"{body}.{self._sign(body)}", session

    def session(self, cookie: str | None, *, now: float | None = None) -> PageSession | None:
        """The session a cookie holds, if its signature matches, it has not expired or been signed out,
        and the key that signed in still holds the role."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 6 or parts[0] != "v1" or not parts[4].isdigit():
            return None
        body = ".".join(parts[:5])
        if not hmac.compare_digest(self._sign(body), parts[5]):
            return None
        _, sid, role_name, kid, expiry = parts[:5]
        t = time.time() if now is None else now
        if int(expiry) < t:
            return None
        signed_out = self._signed_out_now()
        if signed_out is None or sid in signed_out:
            return None
        try:
            role = Role(role_name)
        except ValueError:
            return None
        if self.role_of_key_id(kid) != role:  # revoked, or no longer this role
            return None
        return PageSession(sid=sid, role=role, key_id=kid, expires=int(expiry), csrf=self._csrf(sid))

    def _signed_out_now(self) -> dict[str, int] | None:
        """The signed-out sessions, re-read when the shared file changed (None: unreadable)."""
        path = self._signed_out_file
        with self._lock:
            if path is None:
                return self._signed_out
            try:
                st = path.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._signed_out_stamp:
                self._signed_out = _read_signed_out(path) if stamp else {}
                self._signed_out_stamp = stamp
            return self._signed_out

    def sign_out(self, session: PageSession) -> None:
        """End ``session`` here and, through the shared file, in every process that reads it."""
        now = int(time.time())
        path = self._signed_out_file
        if path is None:
            with self._lock:
                kept = {s: e for s, e in (self._signed_out or {}).items() if e >= now}
                self._signed_out = {**kept, session.sid: session.expires}
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two sign-outs at once lose neither
            current = {s: e for s, e in (_read_signed_out(path) or {}).items() if e >= now}
            current[session.sid] = session.expires
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(current, fh)
            os.replace(tmp, path)
        with self._lock:
            self._signed_out, self._signed_out_stamp = current, None

    # --- requests ------------------------------------------------------------------------------
    def caller(self, request: Any) -> Caller | None:
        """The credential a request carries; AccessDenied (401) for a key that is not accepted."""
        key = request.headers.get(API_KEY_HEADER)
        if key:
            role = self.role_of_key(key)
            if role is None:
                raise AccessDenied(401, "api_key_rejected", "this API key is not accepted")
            return Caller(role=role, via="key")
        session = self.session(request.cookies.get(COOKIE))
        return Caller(role=session.role, via="session", session=session) if session else None

    async def require(self, request: Any, need: Role, *, page: bool) -> Caller:
        """The caller, if it may do what needs ``need``; otherwise AccessDenied. ``page``: a page a
        person opens (no credential → the sign-in page) rather than a JSON endpoint (401)."""
        target = None
        if page and request.method in SAFE_METHODS:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        caller = self.caller(request)
        if caller is None:
            raise AccessDenied(
                401,
                "credential_required",
                f"sign in at /sign-in, or send an {need} key in the X-API-Key header",
                page=target,
            )
        if not role_allows(caller.role, need):
            raise AccessDenied(
                403,
                "role_required",
                f"this needs the {need} role; the credential holds {caller.role}",
                page=target,
            )
        if caller.via == "session" and request.method not in SAFE_METHODS:
            assert caller.session is not None
            await check_csrf(request, caller.session.csrf)
        return caller


def _read_signed_out(path: Path) -> dict[str, int] | None:
    """The file's sessions; None when it is damaged (then no session is accepted: a signed-out
    session must not come back; keys in the header still work, and the log says what to do)."""
    try:
        raw = json.loads(path.read_text() or "{}")
        return {str(k): int(v) for k, v in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as exc:
        log.error(
            "signed-out sessions file is not valid; no page session is accepted until it is deleted",
            path=str(path),
            error=str(exc),
        )
        return None


async def check_csrf(request: Any, expected: str) -> None:
    """AccessDenied (403) unless the request is same-origin (when the browser says) and carries
    ``expected`` in the ``X-CSRF-Token`` header or a ``csrf_token`` form field."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise AccessDenied(403, "cross_site_request", "a request from another site is refused")
    token = request.headers.get(CSRF_HEADER) or (await form(request)).get("csrf_token", "")
    if not token or not hmac.compare_digest(token, expected):
        raise AccessDenied(
            403, "csrf_token_missing", "the page's CSRF token is missing or wrong; reload the page"
        )


async def form(request: Any) -> dict[str, str]:
    """A url-encoded form body as a dict (first value of each field); {} for any other body."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def sign_in_url(target: str) -> str:
    from urllib.parse import quote

    return f"/sign-in?next={quote(safe_next(target), safe='')}"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never ``//evil`` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/analytics/"
    return target
