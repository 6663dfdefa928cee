"""`shelfwise keys …`: API keys with roles (read, write, analyst, admin), kept as sha256 digests in
``keys.json`` under the access directory (default: the var directory). A running server sees a
new or revoked key at its next request. ``--db`` is accepted for symmetry with the other commands;
keys belong to the var directory, not to a store."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shelfwise.cli.common import DbOption, JsonOption, emit, fail, load_settings, user_errors

ROLES = "read, write, analyst or admin"

keys_app = typer.Typer(
    help="API keys with roles: read (personal answers), write (events, items), analyst (analytics "
    "pages), admin (models, deletion, keys; implies every role).",
    no_args_is_help=True,
)


def _ring() -> Any:
    from shelfwise.core.access import KeyRing

    settings = load_settings()
    return KeyRing(settings.access_root / "keys.json")


def _role(value: str) -> Any:
    from shelfwise.core.access import Role

    try:
        return Role(value.strip().lower())
    except ValueError:
        from shelfwise.core.errors import ConfigError

        raise ConfigError(f"--role: {value!r} is not a role", hint=f"use {ROLES}") from None


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option("--role", help=ROLES)],
    name: Annotated[str, typer.Option("--name", help="who holds it (shown by `keys list`)")] = "",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key. It is printed once: only its sha256 is kept."""

    with user_errors():
        key, record = _ring().create(_role(role), name)
        payload = {"key": key, **record.public()}
        emit(
            payload,
            as_json,
            lambda p: f"{p['key']}\n(role {p['role']}, id {p['id']}; shown once: send it as X-API-Key)",
        )


@keys_app.command("list")
def keys_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every key in the key file (id, role, name, created, revoked); never a key or its hash."""

    with user_errors():
        rows = [r.public() for r in _ring().records()]

        def human(p: dict[str, Any]) -> str:
            if not p["keys"]:
                return "no keys (the admin key `shelfwise serve` made is in var/api.key)"
            return "\n".join(
                f"{r['id']}  {r['role']:<8} {'revoked' if r['revoked_ms'] else 'active':<8} {r['name']}"
                for r in p["keys"]
            )

        emit({"keys": rows}, as_json, human)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id, as `keys list` shows it")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key; running servers refuse it from their next request."""
    from shelfwise.core.access import UnknownKeyError

    with user_errors():
        try:
            record = _ring().revoke(key_id)
        except UnknownKeyError:
            fail(f"no key with id {key_id!r} (see `shelfwise keys list`)", 2)
        emit(record.public(), as_json, lambda r: f"revoked {r['id']} ({r['role']})")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
