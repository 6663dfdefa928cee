"""Page sessions (``shelfwise.web.access``): what a cookie may and may not be made to say."""

from __future__ import annotations

import pytest

from shelfwise.core.access import Role
from shelfwise.web.access import PageAccess, key_id, safe_next

KEY = "sw_analyst_" + "k" * 32
SECRET = b"s" * 32


def access(roles: dict[str, Role] | None = None, secret: bytes = SECRET) -> PageAccess:
    keys = {KEY: Role.ANALYST} if roles is None else roles
    by_id = {key_id(k): r for k, r in keys.items()}
    return PageAccess(secret, role_of_key=lambda k: keys.get(k or ""), role_of_key_id=by_id.get)


def test_a_session_names_the_role_and_key_id_never_the_key() -> None:
    issued = access().sign_in(KEY, now=1_000)
    assert issued is not None
    cookie, session = issued
    assert KEY not in cookie and KEY[-16:] not in cookie
    assert session.role is Role.ANALYST and session.key_id == key_id(KEY)
    assert access().session(cookie, now=1_001) == session
    assert access().sign_in("not a key") is None


@pytest.mark.parametrize("field", [1, 2, 3, 4, 5])
def test_changing_any_part_of_the_cookie_voids_it(field: int) -> None:
    cookie, _ = access().sign_in(KEY, now=1_000) or ("", None)
    parts = cookie.split(".")
    other = "y" if parts[field].endswith("x") else "x"  # a different last character, always
    parts[field] = {2: "admin", 4: str(int(parts[4]) + 3600)}.get(field, parts[field][:-1] + other)
    assert ".".join(parts) != cookie
    assert access().session(".".join(parts), now=1_001) is None


def test_another_secret_an_expiry_or_a_changed_key_voids_it() -> None:
    cookie, session = access().sign_in(KEY, now=1_000) or ("", None)
    assert session is not None
    assert access(secret=b"t" * 32).session(cookie, now=1_001) is None
    assert access().session(cookie, now=session.expires + 1) is None
    assert access(roles={KEY: Role.READ}).session(cookie, now=1_001) is None  # the key's role changed
    assert access(roles={}).session(cookie, now=1_001) is None  # the key was revoked


def test_the_csrf_token_belongs_to_one_session() -> None:
    a = access().sign_in(KEY)
    b = access().sign_in(KEY)
    assert a is not None and b is not None
    assert a[1].csrf != b[1].csrf and len(a[1].csrf) == 64


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ops", "/ops"),
        ("/analytics/?x=1", "/analytics/?x=1"),
        ("//evil.example/x", "/analytics/"),
        ("https://evil.example/", "/analytics/"),
        ("/\\evil.example", "/analytics/"),
        ("", "/analytics/"),
        (None, "/analytics/"),
    ],
)
def test_after_sign_in_only_a_path_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        access(secret=b"short")
