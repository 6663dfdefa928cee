"""`shelfwise privacy delete` and `shelfwise privacy verify-deletion`. Heavy imports stay inside.

Both refuse to run without the pseudonym key the store was ingested with (a new key would name
nobody, and "verified" would be a lie), and clean the user id as ingest does before pseudonymising.

verify-deletion exits 0 when every place was checked and none holds the shopper, 1 when one does,
and 3 when none does but some place could not be checked (each named): a place it cannot reach
(a server's memory without ``--api``, Redis that does not answer) is never counted as clean.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from shelfwise.cli.common import DbOption, JsonOption, emit, load_settings, open_db, user_errors

FOUND, INCOMPLETE = 1, 3  # exit codes (0: verified)
MEMORY_PLACES = ("session_store", "result_cache", "search_personal_signals", "models_in_memory")


def _redis_state(settings: Any) -> tuple[Any, Any, str | None]:
    """Sessions and cache in Redis (None, None, why: not configured or not answering)."""
    if not settings.redis_url:
        return None, None, None
    from shelfwise.serving.state import RedisCache, RedisSessions, redis_client

    try:
        client = redis_client(settings.redis_url)
    except Exception as exc:
        return None, None, f"Redis did not answer ({type(exc).__name__})"
    prefix = settings.redis_prefix
    return RedisSessions(client, prefix=prefix), RedisCache(client, prefix=prefix), None


def _places(settings: Any, db: str | None, pseudo: str) -> list[dict[str, Any]]:
    import contextlib

    from shelfwise.registry import ModelRegistry
    from shelfwise.serving.erasure import UNREACHABLE, checked_elsewhere, deletion_report, derived_dirs
    from shelfwise.store import open_store
    from shelfwise.store.journal import EventJournal

    sessions, cache, redis_down = _redis_state(settings)
    url = db or settings.store_url
    var_dir = settings.var_dir
    try:
        store = open_store(url, connect_timeout=settings.store_connect_timeout_seconds)
    except Exception:  # the other places are still checked; the store's are named unchecked
        store = None
    with store if store is not None else contextlib.nullcontext():
        places = deletion_report(
            pseudo,
            store=store,
            registry=ModelRegistry(settings.models_root),
            sessions=sessions,
            cache=cache,
            journal=EventJournal(var_dir / "journal"),
            unreachable=redis_down or UNREACHABLE,
            derived_dirs=derived_dirs(var_dir),
            export_dirs=[var_dir],
            skip=checked_elsewhere(var_dir, store_url=url, models_root=settings.models_root),
        )
    return [p.to_dict() for p in places]


def _server_places(api: str, api_key: str | None, pseudo: str) -> list[dict[str, Any]]:
    """What a running server reports for its own memory (and its journal, registry…)."""
    import httpx

    try:
        reply = httpx.get(
            f"{api.rstrip('/')}/v1/admin/users/{pseudo}/deletion-report",
            params={"pseudonym": "true"},
            headers={"X-API-Key": api_key or ""},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        reply, error = None, f"{api} did not answer ({type(exc).__name__})"
    if reply is not None and reply.status_code == 200:
        return [{**p, "place": f"server:{p['place']}"} for p in reply.json()["places"]]
    if reply is not None:
        error = f"{api} answered {reply.status_code}"
    return [{"place": "server", "found": False, "detail": f"not checked: {error}", "checked": False}]


def register(app: typer.Typer) -> None:
    privacy_app = typer.Typer(help="Erase a shopper and prove it.", no_args_is_help=True)
    app.add_typer(privacy_app, name="privacy")

    @privacy_app.command("verify-deletion")
    def verify_deletion(
        user: Annotated[str, typer.Argument(help="the shop's user id (or its pseudonym with --pseudonym)")],
        db: DbOption = None,
        pseudonym: Annotated[
            bool, typer.Option("--pseudonym", help="USER is already the store's pseudonym")
        ] = False,
        api: Annotated[
            str | None, typer.Option("--api", help="also ask a running server (its memory) at this URL")
        ] = None,
        api_key: Annotated[str | None, typer.Option("--api-key", envvar="SHELFWISE_API_KEY")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Check every place a shopper's data can be: the store (events, users, quarantine), the
        event journal, sessions and cached results (Redis, or a server's memory with --api), search
        signals, models in memory and on disk, derived copies (analytics snapshots, the dashboard,
        var/reports) and exports (backups and any other file under the var directory). Exit 0:
        every place checked, none holds them; 1: some place holds them; 3: none does, but some place
        could not be checked (named)."""

        with user_errors():
            from shelfwise.data.privacy import Pseudonymizer

            settings = load_settings()
            started = time.perf_counter()
            pseudo = user if pseudonym else Pseudonymizer(settings.resolved_pseudonym_key(create=False))(user)
            places = _places(settings, db, pseudo)
            if api:
                server = _server_places(api, api_key, pseudo)
                covered = {p["place"].removeprefix("server:") for p in server if p["checked"]}
                places = [p for p in places if p["checked"] or p["place"] not in covered] + server
            found = [p["place"] for p in places if p["found"]]
            unchecked = [p["place"] for p in places if not p["checked"]]
            payload = {
                "user": user,
                "pseudonym": pseudo,
                "verified": not found and not unchecked,
                "found_in": found,
                "not_checked": unchecked,
                "places": places,
                "seconds": round(time.perf_counter() - started, 4),
            }
        emit(payload, as_json, _human)
        if found:
            raise typer.Exit(FOUND)
        if unchecked:
            if not as_json:
                typer.echo(f"not every place could be checked: {', '.join(unchecked)}", err=True)
            raise typer.Exit(INCOMPLETE)

    @privacy_app.command("delete")
    def delete(
        user: Annotated[str, typer.Argument(help="the shop's user id")],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Erase a shopper (any spelling ingest treats as this id) from the store (a tombstone keeps
        them out), the event journal, Redis state, every model version on disk, derived copies and
        backups under the var directory. Running servers forget them in memory within a second (the
        registry's erasure counter moves). Exits 3 naming the places that failed (retry: it is safe)."""

        with user_errors():
            from shelfwise.data.privacy import Pseudonymizer
            from shelfwise.registry import ModelRegistry
            from shelfwise.serving.erasure import derived_dirs, erase_everywhere
            from shelfwise.store.journal import EventJournal

            settings = load_settings()
            pseudo = Pseudonymizer(settings.resolved_pseudonym_key(create=False))(user)
            sessions, cache, redis_down = _redis_state(settings)
            with open_db(db) as store:
                removed = erase_everywhere(
                    pseudo,
                    store=store,
                    registry=ModelRegistry(settings.models_root),
                    sessions=sessions,
                    cache=cache,
                    journal=EventJournal(settings.var_dir / "journal"),
                    derived_dirs=derived_dirs(settings.var_dir),
                    export_dirs=[settings.var_dir],
                )
            failed = removed.pop("failed")
            if redis_down:
                failed["redis"] = redis_down
        emit(
            {"user": user, "removed": removed, "failed": failed, "complete": not failed},
            as_json,
            lambda p: "\n".join(
                [f"erased {p['user']}: " + ", ".join(f"{k}={v}" for k, v in p["removed"].items())]
                + [f"  FAILED {place}: {error}" for place, error in p["failed"].items()]
            ),
        )
        sys.stdout.flush()
        if failed:
            raise typer.Exit(INCOMPLETE)


def _human(p: dict[str, Any]) -> str:
    if p["found_in"]:
        head = f"FOUND: {p['user']} is still in {', '.join(p['found_in'])}"
    elif p["not_checked"]:
        head = f"NOT VERIFIED: {p['user']} not found, but {len(p['not_checked'])} places were not checked"
    else:
        head = f"clean: {p['user']} ({len(p['places'])} places checked)"
    mark = {(True, True): "FOUND", (False, True): "none ", (False, False): "?    ", (True, False): "FOUND"}
    lines = [f"  {mark[(x['found'], x['checked'])]} {x['place']:<30} {x['detail']}" for x in p["places"]]
    return "\n".join([head, *lines])
