"""`shelfwise models drift` and `shelfwise models retrain`: training that keeps itself fresh.

``retrain`` is what a cron runs (e.g. nightly): train on the store's events, gate the candidate
against the active version on the freshest held-out period (the temporal split's last
``--test-fraction`` of events), activate it when it is at least as good, keep the active one
otherwise. Keeping is a normal outcome (exit 0); ``--if-drift`` skips training unless
``drift_report`` raised an alert. Heavy imports stay inside the commands.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shelfwise.cli.common import DbOption, JsonOption, emit, load_settings, open_db, user_errors

WindowOpt = Annotated[
    float, typer.Option("--window-days", min=0.01, help="compare the last N days with the N days before")
]


def _drift_human(r: dict[str, Any]) -> str:
    lines = [
        f"last {r['window_days']:g} days ({r['current']['events']:,} events) against the "
        f"{r['window_days']:g} days before ({r['reference']['events']:,} events)"
    ]
    for name, c in r["checks"].items():
        value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        lines.append(f"  {name}: {value} (threshold {c['threshold']:g}){'  ALERT' if c['alert'] else ''}")
    return "\n".join(lines)


def register(models_app: typer.Typer) -> None:
    """Add ``drift`` and ``retrain`` to the ``models`` group."""

    @models_app.command("drift")
    def models_drift(db: DbOption = None, window_days: WindowOpt = 7.0, as_json: JsonOption = False) -> None:
        """Drift of event mix, item popularity, catalogue churn, shopper activity and exposure."""

        with user_errors():
            from shelfwise.evaluation.drift import drift_report

            with open_db(db) as store:
                report = drift_report(store, window_days=window_days, now=_newest(store))
            emit(report, as_json, _drift_human)

    @models_app.command("retrain")
    def models_retrain(
        db: DbOption = None,
        model: Annotated[str, typer.Option("--model", "-m", help="model name, or auto")] = "auto",
        test_fraction: Annotated[
            float,
            typer.Option("--test-fraction", min=0.01, max=0.9, help="freshest share held out for the gate"),
        ] = 0.2,
        if_drift: Annotated[
            bool, typer.Option("--if-drift", help="train only when drift raised an alert")
        ] = False,
        window_days: WindowOpt = 7.0,
        as_json: JsonOption = False,
    ) -> None:
        """Train, gate on the freshest held-out period, and activate the candidate or keep the
        active version (both exit 0: a cron job's normal outcomes)."""

        with user_errors():
            from shelfwise.distributed import open_engine, train
            from shelfwise.evaluation.drift import drift_report
            from shelfwise.features.dataset import Dataset
            from shelfwise.registry import GateRefusedError, ModelRegistry, TrainingConfig

            registry = ModelRegistry(load_settings().models_root)
            out: dict[str, Any] = {"active_before": registry.active}
            with open_db(db) as store:
                if if_drift:
                    report = drift_report(store, window_days=window_days, now=_newest(store))
                    out["drift_alerts"] = report["alerts"]
                    if not report["alerts"] and registry.active is not None:
                        out.update(action="skipped", reason="no drift alert", active=registry.active)
                        emit(out, as_json, lambda r: "no drift alert: the active version stays")
                        return
                ds = Dataset.from_store(store)
                store_id = store.store_id
            config = TrainingConfig(recommender={"model": model}, test_fraction=test_fraction)
            try:  # as `models train` does: the version goes active with its shoppers' top lists
                with open_engine("local") as engine:
                    outcome, scoring = train(engine, ds, registry, config, store_id=store_id)
                out.update(action="activated", **outcome.to_dict(), top_lists=scoring)
            except GateRefusedError as exc:
                out.update(action="kept", reason=exc.message)
            out["active"] = registry.active
            emit(out, as_json, lambda r: f"{r['action']}: active version {r['active']}")


def _newest(store: Any) -> int | None:
    """Just after the newest event: a store replaying history is judged at its own 'now'."""
    from shelfwise.store.retention import latest_event_ts

    newest = latest_event_ts(store)
    return None if newest is None else newest + 1
