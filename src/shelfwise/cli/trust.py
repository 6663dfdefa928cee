"""`shelfwise trust …` (differential privacy, shilling, exposure, explanations, model cards) and
the data-rights commands under `shelfwise privacy …` (export, consent, retention, stitch).
Heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import DbOption, JsonOption, emit, fail, load_settings, open_db, user_errors

UserArg = Annotated[str, typer.Argument(help="the shop's user id (or its pseudonym with --pseudonym)")]
PseudoOpt = Annotated[bool, typer.Option("--pseudonym", help="USER is already the store's pseudonym")]

trust_app = typer.Typer(
    help="Trust: differential privacy, robustness to shilling, fairness of exposure, explanations.",
    no_args_is_help=True,
)
dp_app = typer.Typer(
    help="Differentially private releases against the store's ε budget.", no_args_is_help=True
)
trust_app.add_typer(dp_app, name="dp")


def pseudonym_of(user: str, *, pseudonym: bool) -> str:
    """The store's id for the shop's ``user``: cleaned exactly as ingest cleans ids, then
    pseudonymised with the store's existing key (never a new one: it would name nobody)."""
    if pseudonym:
        return user
    from shelfwise.data.privacy import Pseudonymizer

    settings = load_settings()
    return Pseudonymizer(settings.resolved_pseudonym_key(create=False))(user)


# --- differential privacy ----------------------------------------------------------------------


@dp_app.command("budget")
def dp_budget(
    db: DbOption = None,
    set_to: Annotated[float | None, typer.Option("--set", help="set the store's total ε")] = None,
    as_json: JsonOption = False,
) -> None:
    """The store's ε budget, what was spent and what is left."""
    with user_errors():
        from shelfwise.store.ledger import PrivacyLedger

        with open_db(db) as store:
            ledger = PrivacyLedger(store)
            if set_to is not None:
                ledger.set_budget(set_to)
            payload = ledger.summary()
    emit(
        payload,
        as_json,
        lambda p: (
            f"ε budget {p['budget_epsilon']:g}: {p['spent_epsilon']:g} spent in {p['releases']} "
            f"releases, {p['remaining_epsilon']:g} left"
        ),
    )


@dp_app.command("ledger")
def dp_ledger(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every differentially private release recorded in the store, newest first."""
    with user_errors():
        from shelfwise.store.ledger import PrivacyLedger

        with open_db(db) as store:
            ledger = PrivacyLedger(store)
            payload = {**ledger.summary(), "ledger": [r.to_dict() for r in ledger.releases()]}
    emit(
        payload,
        as_json,
        lambda p: "\n".join(
            [f"{len(p['ledger'])} releases, ε {p['spent_epsilon']:g} of {p['budget_epsilon']:g} spent"]
            + [
                f"  #{r['id']} {r['query']:<32} ε={r['epsilon']:g} scale={r['scale']:.3g}"
                for r in p["ledger"]
            ]
        ),
    )


@dp_app.command("release")
def dp_release(
    query: Annotated[
        str, typer.Argument(help="funnel, category-popularity, rfm-segments, trending or cohorts")
    ],
    epsilon: Annotated[float, typer.Option("--epsilon", "-e", help="ε this release spends")],
    db: DbOption = None,
    by: Annotated[str, typer.Option("--by", help="funnel: category, brand, day or total")] = "category",
    top: Annotated[
        int, typer.Option("--top", min=1, help="rows to publish (funnel, popularity, trending)")
    ] = 20,
    max_contributions: Annotated[
        int | None,
        typer.Option("--max-contributions", min=1, help="rows one shopper may add (default per query)"),
    ] = None,
    window_days: Annotated[float, typer.Option("--window-days", help="trending: the recent window")] = 7.0,
    as_json: JsonOption = False,
) -> None:
    """Publish a differentially private aggregate, spending ε from the store's budget (a release
    past the budget is refused, exit 6, and nothing is published)."""
    if not epsilon > 0:
        fail("--epsilon must be positive", 2)
    if by not in ("category", "brand", "day", "total"):
        fail("--by must be category, brand, day or total", 2)
    from shelfwise.cli.analytics import _analytical

    with user_errors():
        from shelfwise.analytics import private
        from shelfwise.core.errors import ShelfwiseError
        from shelfwise.store.ledger import PrivacyLedger

        if query not in private.QUERIES:
            raise ShelfwiseError(
                f"unknown private query {query!r}", hint=f"one of {', '.join(private.QUERIES)}"
            )
        with open_db(db) as store:
            ledger = PrivacyLedger(store)
            # refuse at once, before reading the store, when the budget cannot pay
            ledger.require(query, epsilon)
            with _analytical(db, f"private {query}") as (snapshot, _):
                release = private.release(
                    snapshot,
                    ledger,
                    query,
                    epsilon=epsilon,
                    by=by,  # type: ignore[arg-type]
                    top=top,
                    window_days=window_days,
                    max_contributions=max_contributions,
                )
            payload = {**release.to_dict(), "budget": ledger.summary()}
    emit(
        payload,
        as_json,
        lambda p: (
            f"{p['query']}: ε={p['epsilon']:g} (Laplace scale {p['laplace_scale']:.3g}), "
            f"release #{p['release_id']}; ε left {p['budget']['remaining_epsilon']:g}\n"
            + "\n".join(json.dumps(r, default=str) for r in p["rows"][:top])
        ),
    )


@dp_app.command("train")
def dp_train(
    epsilon: Annotated[float, typer.Option("--epsilon", "-e", help="ε the published list spends")],
    db: DbOption = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="popular, popular-decay or trending")
    ] = "trending",
    max_contributions: Annotated[int, typer.Option("--max-contributions", min=1)] = 20,
    force: Annotated[bool, typer.Option("--force", help="activate even if the gate refuses")] = False,
    as_json: JsonOption = False,
) -> None:
    """Train, register and activate a popular/trending version on ε-DP counts, spending ε from the
    store's ledger first (refused past the budget, exit 6)."""
    if model not in ("popular", "popular-decay", "trending"):
        fail("--model must be popular, popular-decay or trending", 2)
    with user_errors():
        from shelfwise.features.dataset import Dataset
        from shelfwise.registry import ModelRegistry, TrainingConfig, train_version
        from shelfwise.store.ledger import PrivacyLedger

        settings = load_settings()
        with open_db(db) as store:
            ledger = PrivacyLedger(store)
            ledger.require(f"recommend:{model}", epsilon)
            ds = Dataset.from_store(store)
            config = TrainingConfig(
                recommender={
                    "model": model,
                    "dp_epsilon": epsilon,
                    "dp_max_contributions": max_contributions,
                },
                bought_together=None,
            )
            outcome = train_version(
                ds, ModelRegistry(settings.models_root), config, force=force, ledger=ledger
            )
            payload = {**outcome.to_dict(), "budget": ledger.summary()}
    emit(
        payload,
        as_json,
        lambda p: f"activated {p['version']} (ε={epsilon:g}); ε left {p['budget']['remaining_epsilon']:g}",
    )


# --- data rights -------------------------------------------------------------------------------


def export_cmd(
    user: UserArg,
    db: DbOption = None,
    pseudonym: PseudoOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="also write the export to this JSON file")] = None,
    segments: Annotated[
        bool, typer.Option("--segments/--no-segments", help="include the shopper's RFM segment")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Everything the shop holds about a shopper (events of every stitched identity, profile,
    quarantined records, consent, identity links, segment, model versions holding them) as JSON."""
    with user_errors():
        from shelfwise.registry import ModelRegistry
        from shelfwise.trust.rights import export_user

        settings = load_settings()
        pseudo = pseudonym_of(user, pseudonym=pseudonym)
        with open_db(db) as store:
            snapshot = None
            if segments:
                from shelfwise.store.analytical import AnalyticalStore

                snapshot = AnalyticalStore.open(db or settings.store_url)
            try:
                payload = export_user(
                    store, pseudo, registry=ModelRegistry(settings.models_root), analytical=snapshot
                )
            finally:
                if snapshot is not None:
                    snapshot.close()
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(payload, indent=2, default=str))
    emit(
        payload,
        as_json,
        lambda p: (
            f"{user}: "
            + ", ".join(f"{k} {v}" for k, v in p["counts"].items())
            + (f"; written to {out}" if out else "; use --json or --out FILE for the data")
        ),
    )


def consent_cmd(
    user: UserArg,
    db: DbOption = None,
    pseudonym: PseudoOpt = False,
    personalisation: Annotated[
        bool | None,
        typer.Option("--personalisation/--no-personalisation", help="allow or refuse personal answers"),
    ] = None,
    analytics: Annotated[
        bool | None, typer.Option("--analytics/--no-analytics", help="allow or refuse use in analytics")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show or change a shopper's consent flags (no flag given: show them)."""
    with user_errors():
        from shelfwise.store.consent import get_consent, set_consent
        from shelfwise.store.identities import canonical

        pseudo = pseudonym_of(user, pseudonym=pseudonym)
        with open_db(db) as store:
            shopper = canonical(store, pseudo)
            if personalisation is None and analytics is None:
                state = get_consent(store, shopper)
            else:
                state = set_consent(
                    store,
                    shopper,
                    no_personalisation=None if personalisation is None else not personalisation,
                    no_analytics=None if analytics is None else not analytics,
                )
        payload = {"user": user, **state.to_dict()}
    emit(
        payload,
        as_json,
        lambda p: (
            f"{user}: personalisation {'off' if p['no_personalisation'] else 'on'}, "
            f"analytics {'off' if p['no_analytics'] else 'on'}"
        ),
    )


def retention_cmd(
    older_than_days: Annotated[
        float, typer.Option("--older-than-days", help="expire raw events older than this")
    ],
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would go, change nothing")] = False,
    as_json: JsonOption = False,
) -> None:
    """Expire raw events older than N days, keeping daily per-item aggregates (event_rollups)."""
    with user_errors():
        from shelfwise.store.retention import expire_events, rollup_totals

        with open_db(db) as store:
            report = expire_events(store, older_than_days=older_than_days, dry_run=dry_run)
            report["rollups"] = rollup_totals(store)
    emit(
        report,
        as_json,
        lambda r: (
            f"{'would expire' if r['dry_run'] else 'expired'} {r['events']:,} events over {r['days']} days "
            f"and {r['quarantine']:,} quarantined records; profiles removed {r['profiles_removed']:,}"
        ),
    )


def stitch_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Stitch identities (guest sessions that signed in, one shopper on several devices) into the
    store's identity map: recommendations, export and deletion then see one shopper."""
    from shelfwise.cli.analytics import _analytical

    with user_errors(), _analytical(db, "stitch") as (snapshot, _):
        from shelfwise.trust.stitching import stitch_into_store

        with open_db(db) as store:
            payload = stitch_into_store(store, snapshot)
    emit(payload, as_json, lambda p: f"{p['links']} identity links for {p['shoppers']} shoppers")


def _privacy_group(app: typer.Typer) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == "privacy" and group.typer_instance is not None:
            return group.typer_instance
    privacy = typer.Typer(
        help="A shopper's data: export, consent, deletion, retention.", no_args_is_help=True
    )
    app.add_typer(privacy, name="privacy")
    return privacy


def register(app: typer.Typer) -> None:
    """Add `trust …` and the data-rights commands of `privacy …`."""
    app.add_typer(trust_app, name="trust")
    privacy = _privacy_group(app)
    privacy.command("export")(export_cmd)
    privacy.command("consent")(consent_cmd)
    privacy.command("retention")(retention_cmd)
    privacy.command("stitch")(stitch_cmd)


# --- robustness, exposure, explanations, model cards ---------------------------------------------

DataOpt = Annotated[Path | None, typer.Option("--data", help="events file instead of the store")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="format of --data")]


def _dataset(data: Path | None, fmt: str, db: str | None) -> Any:
    from shelfwise.cli.evaluate import _load_dataset

    return _load_dataset(data, fmt, None if data is not None else db)


@trust_app.command("shilling")
def shilling_cmd(
    db: DbOption = None,
    data: DataOpt = None,
    fmt: FormatOpt = "online-retail",
    attack: Annotated[
        str, typer.Option("--attack", help="push, nuke, view-burst, rating-burst or bots")
    ] = "push",
    model: Annotated[str, typer.Option("--model", "-m")] = "ease",
    fake_share: Annotated[float, typer.Option("--fake-share", min=0.001, max=0.5)] = 0.03,
    targets: Annotated[int, typer.Option("--targets", min=1, max=50)] = 3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    defence: Annotated[
        str, typer.Option("--defence", help="weighted (default), edges or accounts")
    ] = "weighted",
    compare: Annotated[
        list[str] | None, typer.Option("--compare", help="another defence to measure beside it")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Attack the training data with fake accounts, detect them, and compare the attacked items'
    exposure and NDCG@10 with and without the defence in training (against the undefended model
    on the attacked data, ``ndcg_change``, and against a model that never saw the attack,
    ``ndcg_change_vs_clean``)."""
    if attack not in ("push", "nuke", "view-burst", "rating-burst", "bots"):
        fail("--attack must be push, nuke, view-burst, rating-burst or bots", 2)
    for name in (defence, *(compare or [])):
        if name not in ("weighted", "edges", "accounts"):
            fail(f"--defence/--compare: {name!r} is not weighted, edges or accounts", 2)
    with user_errors():
        from shelfwise.evaluation.robustness import Attack, shilling_experiment

        ds = _dataset(data, fmt, db)
        payload = shilling_experiment(
            ds,
            model={"model": model},
            attack=Attack(kind=attack, targets=targets, fake_share=fake_share, seed=seed),  # type: ignore[arg-type]
            defence=defence,
            compare=tuple(compare or ()),
        )
    emit(
        payload,
        as_json,
        lambda p: (
            f"{p['attack']} on {p['model']}: exposure lift {p['attack_exposure_lift_without_defence']:+.3f} "
            f"without the defence, {p['attack_exposure_lift_with_defence']:+.3f} with it; NDCG@10 change "
            f"{p['ndcg_change'] or 0:+.2%} vs undefended, {p['ndcg_change_vs_clean'] or 0:+.2%} vs clean; "
            f"detection precision {p['detection']['precision']:.3f} "
            f"recall {p['detection']['recall']:.3f}"
            + (
                f"; the attack itself moved the undefended NDCG@10 by {p['ndcg_inflation_by_attack']:+.2%} "
                f"(its fillers alone {p['ndcg_inflation_by_fillers']:+.2%})"
                if p.get("ndcg_inflation_by_attack") is not None
                else ""
            )
        ),
    )


@trust_app.command("exposure")
def exposure_cmd(
    db: DbOption = None,
    data: DataOpt = None,
    fmt: FormatOpt = "online-retail",
    model: Annotated[str, typer.Option("--model", "-m")] = "ease",
    group: Annotated[str, typer.Option("--group", help="brand, price_band or new")] = "price_band",
    as_json: JsonOption = False,
) -> None:
    """Exposure across item groups, and the NDCG/exposure trade-off of the calibrated re-ranking."""
    if group not in ("brand", "price_band", "new"):
        fail("--group must be brand, price_band or new", 2)
    with user_errors():
        from shelfwise.evaluation.fairness import exposure_tradeoff, fairness_figures
        from shelfwise.evaluation.protocol import make_split
        from shelfwise.recommend.registry import model_from_config

        ds = _dataset(data, fmt, db)
        split = make_split(ds, "temporal")
        fitted = model_from_config({"model": model}).fit(split.train)
        payload = {
            "model": model,
            "group": group,
            "exposure": fairness_figures(fitted, split),
            "tradeoff": exposure_tradeoff(fitted, split, group),
        }
    emit(
        payload,
        as_json,
        lambda p: "\n".join(
            f"λ={r['lambda']:.1f}  ndcg@10 {r['ndcg@10']:.4f}  exposure gap {r['exposure_gap']}"
            for r in p["tradeoff"]
        ),
    )


@trust_app.command("explain")
def explain_cmd(
    user: UserArg,
    db: DbOption = None,
    pseudonym: PseudoOpt = False,
    version: Annotated[
        str | None, typer.Option("--version", help="registry version (default: active)")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100)] = 10,
    item: Annotated[list[str] | None, typer.Option("--item", help="explain this item (repeatable)")] = None,
    as_json: JsonOption = False,
) -> None:
    """The full TreeSHAP attribution of a hybrid version's recommendations for one shopper."""
    with user_errors():
        from shelfwise.registry import ModelRegistry
        from shelfwise.trust.explaining import explain_user

        settings = load_settings()
        pseudo = pseudonym_of(user, pseudonym=pseudonym)
        with open_db(db) as store:
            payload = explain_user(
                ModelRegistry(settings.models_root), store, pseudo, version=version, k=k, items=item
            )
    emit(
        payload,
        as_json,
        lambda p: "\n".join(f"{a['item']:<16} {a['reason']}  [{a['top_feature']}]" for a in p["items"]),
    )


@trust_app.command("card")
def card_cmd(
    version: Annotated[str | None, typer.Argument(help="registry version (default: active)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a version's model card (written when the version was trained)."""
    with user_errors():
        from shelfwise.registry import ModelRegistry
        from shelfwise.trust.explaining import model_card

        card, markdown = model_card(ModelRegistry(load_settings().models_root), version)
    emit(card, as_json, lambda _: markdown)
