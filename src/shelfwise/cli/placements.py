"""`shelfwise placements …`: list, show and save placements and their merchandising rules, roll one
back, and manage the shop's search settings (synonyms, redirects, stop words, query rules).

Every save is validated (a bad rule names its field; a rule for an unknown item is refused) and
stored as a new version; the old ones are kept.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shelfwise.cli.common import DbOption, JsonOption, emit, fail, open_db, user_errors

NameArg = Annotated[
    str, typer.Argument(help="placement: home, product, cart, search, category, email, store…")
]
AuthorOpt = Annotated[
    str | None, typer.Option("--author", help="who made the change (kept with the version)")
]

placements_app = typer.Typer(
    help="Placements and their merchandising rules; search synonyms, redirects and stop words.",
    no_args_is_help=True,
)


def _service(store: Any) -> Any:
    from shelfwise.merchandising.service import Merchandising

    return Merchandising(store)


def _rule_line(rule: dict[str, Any]) -> str:
    detail = ", ".join(
        f"{k}={v}" for k, v in rule.items() if k not in ("kind", "name") and v not in (None, [], "")
    )
    return f"    {rule['kind']:<10} {rule.get('name') or ''} {detail}".rstrip()


def _placement_text(p: dict[str, Any]) -> str:
    head = f"{p['name']} (version {p['version']}{', default' if p['version'] == 0 else ''}): "
    head += f"source={p['source']} model={p['model']} k={p['k']} candidates={p['candidates']}"
    rules = p["rules"]["rules"]
    lines = [head, f"  {p['description']}" if p["description"] else None, f"  {len(rules)} rules"]
    lines += [_rule_line(r) for r in rules]
    return "\n".join(x for x in lines if x)


@placements_app.command("list")
def list_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every placement with its source, version and number of rules."""
    with user_errors(), open_db(db) as store:
        payload = {"placements": [p.to_dict() for p in _service(store).placements()]}
    emit(
        payload,
        as_json,
        lambda p: "\n".join(
            f"{x['name']:<12} v{x['version']:<3} {x['source']:<16} k={x['k']:<3} "
            f"{len(x['rules']['rules'])} rules  {x['description']}"
            for x in p["placements"]
        ),
    )


@placements_app.command("show")
def show_cmd(
    name: NameArg,
    db: DbOption = None,
    version: Annotated[int | None, typer.Option("--version", min=0, help="an older version")] = None,
    history: Annotated[bool, typer.Option("--history", help="every version, newest first")] = False,
    as_json: JsonOption = False,
) -> None:
    """One placement (its latest or a given version), or its history."""
    with user_errors(), open_db(db) as store:
        svc = _service(store)
        if history:
            versions = [p.to_dict() for p in svc.history(name)]
            payload: dict[str, Any] = {"name": name, "versions": versions}
        else:
            payload = svc.placement(name, version=version).to_dict()
    if history:
        emit(
            payload,
            as_json,
            lambda p: "\n".join(
                [f"{p['name']}: {len(p['versions'])} versions"]
                + [
                    f"  v{v['version']} saved_at={v['saved_at']} by {v['author'] or '-'}"
                    for v in p["versions"]
                ]
            ),
        )
    else:
        emit(payload, as_json, _placement_text)


@placements_app.command("set")
def set_cmd(
    name: NameArg,
    config: Annotated[str, typer.Option("--config", help="the placement as JSON, inline or @file.json")],
    db: DbOption = None,
    author: AuthorOpt = None,
    as_json: JsonOption = False,
) -> None:
    """Save a placement (source, model, k, candidates, filters, rules) as its next version."""
    from shelfwise.cli.common import json_object_option

    with user_errors():
        body = json_object_option(config, "--config")
        with open_db(db) as store:
            payload = _service(store).save_placement(name, body, author=author).to_dict()
    emit(payload, as_json, lambda p: f"saved {p['name']} version {p['version']}")


@placements_app.command("rules")
def rules_cmd(
    name: NameArg,
    db: DbOption = None,
    set_to: Annotated[
        str | None,
        typer.Option("--set", help='replace the rules: {"rules": [...]} as JSON, inline or @file.json'),
    ] = None,
    add: Annotated[str | None, typer.Option("--add", help="add one rule (a JSON object)")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove every rule")] = False,
    author: AuthorOpt = None,
    as_json: JsonOption = False,
) -> None:
    """Show a placement's rules, or save new ones (--set, --add, --clear) as its next version."""
    from shelfwise.cli.common import json_object_option

    if sum(x is not None and x is not False for x in (set_to, add, clear or None)) > 1:
        fail("give one of --set, --add, --clear", 2)
    with user_errors(), open_db(db) as store:
        svc = _service(store)
        if set_to is not None or add is not None or clear:
            if clear:
                rules: dict[str, Any] = {"rules": []}
            elif set_to is not None:
                rules = json_object_option(set_to, "--set")
            else:
                current = svc.rules(name).model_dump(mode="json")
                rules = {"rules": [*current["rules"], json_object_option(add, "--add")]}
            saved = svc.save_rules(name, rules, author=author)
            payload = {
                "name": name,
                "version": saved.version,
                **saved.placement.rules.model_dump(mode="json"),
            }
        else:
            stored = svc.placement(name)
            payload = {
                "name": name,
                "version": stored.version,
                **stored.placement.rules.model_dump(mode="json"),
            }
    emit(
        payload,
        as_json,
        lambda p: "\n".join(
            [f"{p['name']} version {p['version']}: {len(p['rules'])} rules"]
            + [_rule_line(r) for r in p["rules"]]
        ),
    )


@placements_app.command("rollback")
def rollback_cmd(
    name: NameArg,
    version: Annotated[int, typer.Argument(min=1, help="the version to make current again")],
    db: DbOption = None,
    author: AuthorOpt = None,
    as_json: JsonOption = False,
) -> None:
    """Save an older version again as the newest (nothing is deleted)."""
    with user_errors(), open_db(db) as store:
        payload = _service(store).rollback(name, version, author=author).to_dict()
    emit(payload, as_json, lambda p: f"{p['name']} is now version {p['version']} (a copy of {version})")


@placements_app.command("search")
def search_cmd(
    db: DbOption = None,
    set_to: Annotated[
        str | None,
        typer.Option(
            "--set",
            help="replace the settings: {synonyms, redirects, stop_words, query_rules} as JSON or @file",
        ),
    ] = None,
    author: AuthorOpt = None,
    as_json: JsonOption = False,
) -> None:
    """Show (or with --set save) the shop's synonyms, redirects, stop words and query rules."""
    from shelfwise.cli.common import json_object_option

    with user_errors():
        body = json_object_option(set_to, "--set") if set_to is not None else None
        with open_db(db) as store:
            svc = _service(store)
            settings, version = (
                svc.search_settings() if body is None else svc.save_search_settings(body, author=author)
            )
            payload = {"version": version, **settings.model_dump(mode="json")}
    emit(
        payload,
        as_json,
        lambda p: (
            f"search settings version {p['version']}: {len(p['synonyms'])} synonyms, {len(p['redirects'])} "
            f"redirects, {len(p['stop_words'])} stop words, {len(p['query_rules'])} query rules"
        ),
    )


@placements_app.command("query-report")
def query_report_cmd(
    db: DbOption = None,
    days: Annotated[float, typer.Option("--days", min=0.001, help="searches of the last N days")] = 30.0,
    min_searches: Annotated[
        int, typer.Option("--min-searches", min=1, help="low-click: at least this many searches with results")
    ] = 3,
    max_ctr: Annotated[
        float, typer.Option("--max-ctr", min=0.0, max=1.0, help="low-click: click-through at most this")
    ] = 0.1,
    limit: Annotated[int, typer.Option("--limit", min=1, help="rows of each list")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Zero-result and low-click queries, from the search answers served and the clicks on them;
    fix one with `placements search --set` (a synonym or a redirect) or on the merchant page."""
    with user_errors(), open_db(db) as store:
        payload = _service(store).query_report(
            days=days, min_searches=min_searches, max_ctr=max_ctr, limit=limit
        )

    def human(p: dict[str, Any]) -> str:
        lines = [
            f"{p['searches']} searches of {p['queries']} queries since {p['since']}; "
            f"{p['zero_result_searches']} found nothing"
        ]
        for title, rows in (("zero-result queries", p["zero_result"]), ("low-click queries", p["low_click"])):
            lines.append(f"{title}:" if rows else f"{title}: none")
            lines += [
                f"  {r['query'][:40]:<40} searches {r['searches']:>5}  zero {r['zero_results']:>5}  "
                f"ctr {'-' if r['ctr'] is None else format(r['ctr'], '.0%'):>4}"
                + (f"  ({'; '.join(r['managed'])})" if r["managed"] else "")
                for r in rows
            ]
        return "\n".join(lines)

    emit(payload, as_json, human)


def register(app: typer.Typer) -> None:
    app.add_typer(placements_app, name="placements")
