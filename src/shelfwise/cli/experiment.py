"""`shelfwise experiment simulate`: run an experiment against a shopper simulator fitted on real
behaviour, where the truth is known. Heavy imports go inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import emit, fail, open_db, user_errors

SCENARIOS = ("srm", "ope", "interleaving-vs-ab", "canary-rollback")
RETAIL = Path(__file__).resolve().parents[3] / "data" / "online_retail" / "online_retail.csv.gz"


ASSUMED_REASON = (
    "assumed, not fitted: no served lists to fit a click model on (Online Retail records purchases; "
    "REES46, OTTO and Taobao record what was viewed, not which lists were shown). The position-based "
    "model is the default because it does not flatter interleaving: the cascade model gives it a "
    "larger advantage here and the dependent one (continuation 0.5) about the same (see "
    "benchmarks/results/experiments_simulate.json). Give --clicks-from (or --db) a store with logged "
    "impressions and attributed clicks to fit it"
)
CLICK_K = 10  # the simulator's list length: served lists are cut to their top 10


def _click_settings(url: str, *, required: bool) -> dict[str, Any] | None:
    """Fit the click models on a store's served lists and attributed clicks; the comparison with
    the winner's simulator settings, or None when the store has too few lists (and ``required``
    is false)."""
    from shelfwise.core.errors import InputFileError
    from shelfwise.evaluation.click_models import choose_click_model, logged_click_log

    with open_db(url) as store:
        log = logged_click_log(store, k=CLICK_K)
    try:
        return choose_click_model(log)
    except ValueError as exc:
        if not required:
            return None
        raise InputFileError(
            f"--clicks-from: {exc}", hint="log impressions (answers carry ids) and cite them in click events"
        ) from None


def _fit(
    db: str | None,
    data: Path | None,
    limit: int,
    seed: int,
    click_model: str | None = None,
    continuation: float = 0.5,
    fmt: str = "online-retail",
    clicks_from: str | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    from shelfwise.cli.progress import bytes_bar
    from shelfwise.core.errors import InputFileError
    from shelfwise.evaluation.simulator import ShopperSimulator, SimulatorConfig
    from shelfwise.features.dataset import Dataset

    if db is not None and data is not None:
        raise InputFileError("give --db URL or --data PATH, not both")
    if db is not None:
        with open_db(db) as store:
            ds = Dataset.from_store(store)
        if len(ds) == 0:
            raise InputFileError(
                "the store holds no user-item events to fit a simulator on",
                hint="run `shelfwise ingest events` first",
            )
    else:
        path = data or RETAIL
        if not path.is_file():
            raise InputFileError(f"{path}: no such file (an events file in format {fmt})")
        with bytes_bar(f"read {path.name}") as progress:
            ds = Dataset.from_file(path, fmt, limit=limit, progress=progress)
    fit_report = None
    if click_model is not None:
        settings: dict[str, Any] = {
            "click_model": click_model,
            "continuation": continuation,
            "click_model_source": "given",
            "click_model_reason": "given with --click-model",
        }
    else:
        fit_report = (
            _click_settings(clicks_from or db, required=clicks_from is not None)
            if (clicks_from or db)
            else None
        )
        if fit_report is not None:
            settings = {
                **fit_report["settings"],
                "click_model_source": "fitted",
                "click_model_reason": fit_report["reason"],
            }
        else:
            settings = {"click_model": "position", "click_model_reason": ASSUMED_REASON}
    try:
        config = SimulatorConfig(**settings)
        return ShopperSimulator.fit(ds, config, seed=seed), fit_report
    except ValueError as exc:
        raise InputFileError(str(exc)) from None


def _human(out: dict[str, Any]) -> str:
    scenario = out["scenario"]
    fit = out["simulator"]
    head = (
        f"simulator fitted on {fit['source']}: {fit['buyers']:,} buyers, {fit['items']:,} items, "
        f"{fit['purchases']:,} purchases"
        if fit
        else f"{out['users']:,} users assigned by salted hash, tested against 50/50 at p < {out['alpha']}"
    )
    if scenario == "srm":
        lines = [
            f"{name}: counts {r['counts']}, p = {r['p']:.3g}, srm_flagged = {r['srm_flagged']}"
            for name, r in ((n, out[n]) for n in ("injected", "fair"))
        ]
    elif scenario == "ope":
        lines = [
            f"true click rate of the candidate policy: {out['true_value']:.4f}",
            *(
                f"{k.upper():>5}: {out['estimates'][k]:.4f} ± {out['estimates'][k + '_se']:.4f} (s.e.), "
                f"relative error {out[k + '_error']:.2%}"
                for k in ("ips", "snips", "dr")
            ),
        ]
    elif scenario == "canary-rollback":
        lines = [
            f"{name.replace('_', ' ')}: {out[name]['decision']}"
            + (
                f" at window {out[name]['rolled_back_at_window']}"
                if out[name]["rolled_back_at_window"]
                else ""
            )
            for name in ("broken_canary", "healthy_canary")
        ] + [
            f"the drop began in window {out['drop_at_window']}; rolled back within one window: "
            f"{out['rolled_back_within_one_window']}"
        ]
    else:
        lines = [
            f"NDCG@{out['k']}: A {out['ndcg_a']:.4f}, B {out['ndcg_b']:.4f} "
            f"({out['ndcg_relative_difference']:.2%} lower)",
            f"users for 80% power: A/B {out['ab_users']:,}, interleaving {out['interleaving_users']:,} "
            f"(ratio {out['ratio']:.1f}"
            + (
                f", 95% interval {out['ratio_ci95'][0]:.1f}-{out['ratio_ci95'][1]:.1f})"
                if "ratio_ci95" in out
                else ")"
            ),
            f"A/B analysis: {out['ab_analysis']}; clicks per user instead: "
            f"{out['ab_users_clicks_per_user']:,} users (ratio {out['ratio_clicks_per_user']:.1f})",
        ]
        if "check_runs" in out:
            lines.append(
                f"simulated power at those sizes ({out['check_runs']} runs): "
                f"A/B {out['ab_simulated_power']:.3f}, interleaving {out['interleaving_simulated_power']:.3f}"
            )
    if fit:
        head += f"\nclick model: {out['click_model']} ({out['click_model_reason']})"
    return "\n".join([head, *lines])


def register(app: typer.Typer) -> None:
    """Add the ``experiment`` command group to the top-level app."""
    experiment_app = typer.Typer(
        help="Online experiments: create, read and stop them; simulate them against a known truth."
    )
    app.add_typer(experiment_app, name="experiment")
    _register_lifecycle(experiment_app)

    @experiment_app.command("simulate")
    def simulate(
        scenario: Annotated[
            str, typer.Option("--scenario", help="srm, ope, interleaving-vs-ab or canary-rollback")
        ],
        seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
        db: Annotated[
            str | None, typer.Option("--db", help="fit the simulator on this store's events")
        ] = None,
        data: Annotated[
            Path | None,
            typer.Option("--data", help="an Online Retail file to fit on (default: the vendored one)"),
        ] = None,
        limit: Annotated[
            int, typer.Option("--limit", min=1000, help="read only the first N lines of the file")
        ] = 150_000,
        users: Annotated[
            int, typer.Option("--users", min=100, help="simulated users (srm, interleaving-vs-ab)")
        ] = 20_000,
        logs: Annotated[int, typer.Option("--logs", min=100, help="logged impressions (ope)")] = 200_000,
        epsilon: Annotated[
            float, typer.Option("--epsilon", min=0.01, max=1.0, help="ope: the logging policy's exploration")
        ] = 0.5,
        check_runs: Annotated[
            int, typer.Option("--check-runs", min=0, help="simulated experiments checking each power figure")
        ] = 500,
        click_model: Annotated[
            str | None,
            typer.Option(
                "--click-model",
                help="position (independent clicks), cascade (first click only) or dependent "
                "(position examination; after a click go on with probability --continuation). "
                "Default: the best fit on --clicks-from (or --db) served lists, else position (assumed)",
            ),
        ] = None,
        clicks_from: Annotated[
            str | None,
            typer.Option(
                "--clicks-from",
                help="fit the click model (position, cascade or dependent, by held-out likelihood) on "
                "this store's logged impressions and attributed clicks",
            ),
        ] = None,
        continuation: Annotated[
            float,
            typer.Option(
                "--continuation", min=0.0, max=1.0, help="dependent click model: P(go on after a click)"
            ),
        ] = 0.5,
        fmt: Annotated[
            str, typer.Option("--format", help="format of the --data file (online-retail, rees46, otto, ...)")
        ] = "online-retail",
        interleaving: Annotated[
            str,
            typer.Option(
                "--interleaving",
                help="interleaving-vs-ab: team-draft (shared picks uncredited) or optimized "
                "(Radlinski & Craswell 2013, a linear programme per user: slower)",
            ),
        ] = "team-draft",
        ranker_correlation: Annotated[
            float,
            typer.Option(
                "--ranker-correlation",
                min=0.0,
                max=0.99,
                help="interleaving-vs-ab: the share of ranker B's errors it has in common with A's "
                "(0: independent, the least favourable to interleaving; two real model versions share more)",
            ),
        ] = 0.0,
        report: Annotated[
            Path | None, typer.Option("--report", help="canary-rollback: write the timeline (markdown) here")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
    ) -> None:
        """Run an experiment on simulated shoppers and compare its answer with the simulator's truth."""

        if scenario not in SCENARIOS:
            fail(f"--scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}", 2)
        with user_errors():
            from shelfwise.evaluation import simulated_experiments as sx

            if scenario == "srm":
                # assignment alone: no shopper behaviour is involved, so no simulator is fitted
                out: dict[str, Any] = {"simulator": None, **sx.srm_scenario(users=users, seed=seed)}
            else:
                if interleaving not in sx.INTERLEAVING_METHODS:
                    fail(f"--interleaving must be team-draft or optimized; got {interleaving!r}", 2)
                if click_model is not None and click_model not in ("position", "cascade", "dependent"):
                    fail(f"--click-model must be position, cascade or dependent; got {click_model!r}", 2)
                if click_model is not None and clicks_from is not None:
                    fail("give --click-model (a choice) or --clicks-from (a fit), not both", 2)
                sim, click_fit = _fit(db, data, limit, seed, click_model, continuation, fmt, clicks_from)
                if scenario == "ope":
                    out = sx.ope_scenario(sim, logs=logs, epsilon=epsilon, seed=seed)
                elif scenario == "canary-rollback":
                    from shelfwise.registry.canary_simulation import (
                        canary_rollback_scenario,
                        timeline_markdown,
                    )

                    out = canary_rollback_scenario(sim, seed=seed)
                    if report is not None:
                        report.parent.mkdir(parents=True, exist_ok=True)
                        report.write_text(timeline_markdown(out))
                        out["report"] = str(report)
                else:
                    out = sx.interleaving_vs_ab_scenario(
                        sim,
                        users=users,
                        check_runs=check_runs,
                        seed=seed,
                        interleaving=interleaving,
                        ranker_correlation=ranker_correlation,
                    )
                out = {
                    "simulator": sim.meta,
                    "click_model": sim.config.click_model,
                    "click_model_source": sim.config.click_model_source,
                    "click_model_reason": sim.config.click_model_reason,
                    **({"click_model_fit": click_fit} if click_fit is not None else {}),
                    **out,
                }
            emit({"scenario": scenario, "seed": seed, **out}, as_json, _human)


# --- create | status | stop | list --------------------------------------------------------------------


def _arm(text: str) -> dict[str, Any]:
    from shelfwise.core.errors import ConfigError

    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 5:
        raise ConfigError(
            f"--arm {text!r}: expected NAME:SHARE[:MODEL_VERSION[:INDEX_VERSION[:SEARCH_MODE]]]"
        )
    try:
        share = float(parts[1])
    except ValueError:
        raise ConfigError(f"--arm {text!r}: share {parts[1]!r} is not a number") from None
    arm: dict[str, Any] = {"name": parts[0], "share": share}
    if len(parts) > 2 and parts[2]:
        arm["version"] = parts[2]
    if len(parts) > 3 and parts[3]:
        arm["index_version"] = parts[3]
    if len(parts) > 4 and parts[4]:
        arm["search_mode"] = parts[4]
    return arm


def _guardrail(text: str) -> dict[str, Any]:
    from shelfwise.core.errors import ConfigError

    metric, _, drop = text.partition(":")
    try:
        return {"metric": metric, "max_drop": float(drop) if drop else 0.0}
    except ValueError:
        raise ConfigError(f"--guardrail {text!r}: expected METRIC[:MAX_RELATIVE_DROP]") from None


def _ms(text: str | None, option: str) -> int | None:
    from datetime import UTC, datetime

    from shelfwise.core.errors import ConfigError

    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not an ISO-8601 time (e.g. 2026-12-03T09:00)") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def _row(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "placement": row.placement,
        "status": row.status,
        "start_ts": row.start_ts,
        "end_ts": row.end_ts,
        "stopped_at": row.stopped_at,
        "spec": row.spec,
    }


def _finite(value: Any) -> Any:
    """NaN and infinities (an undefined interval) as null: --json prints strict JSON."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _side(arm: dict[str, Any], placement: str) -> str:
    """What an interleaving arm serves: a model version, or on search an index version and mode."""
    if placement == "search":
        return f"index {arm.get('index_version') or 'active'}, {arm.get('search_mode') or 'its own mode'}"
    return arm.get("version") or "active"


def _interleaving_human(out: dict[str, Any]) -> str:
    a, b = out["arms"]
    lines = [
        f"{out['name']} on {out['placement']}: {out['status']}, interleaving "
        f"{a['arm']} ({_side(a, out['placement'])}) vs {b['arm']} ({_side(b, out['placement'])})",
        f"  {out['units']:,} shoppers, {out['impressions']:,} answers, {out['clicks']:,} clicks; "
        f"answers won: {', '.join(f'{k} {v:,}' for k, v in out['impression_wins'].items())}",
    ]
    for key, r in out["credit"].items():
        primary = " (primary)" if key == out["primary_credit"] else ""
        interval = "no interval yet" if r["se"] != r["se"] else f"[{r['low']:+.4g}, {r['high']:+.4g}]"
        lines.append(
            f"  {key.replace('_', ' ')} credit{primary}: {r['mean']:+.4g} per shopper {interval} "
            f"(A minus B), always-valid p = {r['sequential_p']:.3g}"
        )
    lines.append(f"  examination curve: {out.get('examination_source')}")
    lines.append(f"  preferred: {out['preferred'] or 'none yet'}")
    return "\n".join(lines)


def _status_human(out: dict[str, Any]) -> str:
    if out.get("kind") == "interleaving":
        return _interleaving_human(out)
    lines = [
        f"{out['name']} on {out['placement']}: {out['status']}, primary metric {out['primary_metric']}",
        f"SRM: counts {out['srm']['counts']}, p = {out['srm']['p']:.3g}, flagged = {out['srm']['flagged']}",
    ]
    for arm in out["arms"]:
        m = arm["metrics"]
        shown = ", ".join(
            f"{k} {v['value']:.4g} [{v['low']:.4g}, {v['high']:.4g}]"
            for k, v in m.items()
            if v["value"] == v["value"]
        )
        lines.append(f"  {arm['arm']}: {arm['units']:,} units; {shown or 'no data'}")
    for c in out["comparisons"]:
        if "sequential" not in c:
            lines.append(f"  {c['arm']} vs {c['control']}: {c.get('note', '')}")
            continue
        seq = c["sequential"]
        lift = c["lifts"].get(seq["metric"], {})
        lines.append(
            f"  {c['arm']} vs {c['control']}: {seq['metric']} lift {lift.get('lift', float('nan')):+.2%} "
            f"[{lift.get('low', float('nan')):+.2%}, {lift.get('high', float('nan')):+.2%}], "
            f"always-valid p = {seq['p']:.3g}{' (significant)' if seq['reject'] else ''}"
        )
        if c["cuped"].get("applied"):
            lines.append(f"    CUPED variance reduction {c['cuped']['variance_reduction']:.1%}")
        for g in c["guardrails"]:
            lines.append(f"    guardrail {g['metric']} (max drop {g['max_drop']:.1%}): {g['verdict']}")
    return "\n".join(lines)


Db = Annotated[str | None, typer.Option("--db", help="store URL (default: the configured one)")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def _register_lifecycle(experiment_app: typer.Typer) -> None:
    @experiment_app.command("create")
    def create(
        name: Annotated[str, typer.Option("--name", help="experiment name")],
        placement: Annotated[str, typer.Option("--placement", help="where answers are served, e.g. home")],
        arm: Annotated[
            list[str],
            typer.Option(
                "--arm", help="NAME:SHARE[:MODEL_VERSION[:INDEX_VERSION[:SEARCH_MODE]]], the first is control"
            ),
        ],
        kind: Annotated[
            str,
            typer.Option(
                "--kind",
                help="ab (each shopper sees one arm) or interleaving (each answer a team draft of the two "
                "arms' lists: model versions, or on search index versions / modes; clicks credited to "
                "the arm whose pick they were)",
            ),
        ] = "ab",
        primary_metric: Annotated[
            str, typer.Option("--metric", help="ctr, add_to_cart_rate, conversion or revenue_per_session")
        ] = "ctr",
        guardrail: Annotated[
            list[str] | None, typer.Option("--guardrail", help="METRIC[:MAX_RELATIVE_DROP], repeatable")
        ] = None,
        traffic: Annotated[
            str, typer.Option("--traffic", help="FROM:TO share of the placement's traffic, e.g. 0:0.5")
        ] = "0:1",
        examination: Annotated[
            str | None,
            typer.Option(
                "--examination",
                help="interleaving: the chance a shopper looks at each slot, which the credits divide by: "
                "'fitted' (the position click model fitted on the placement's randomised lists and "
                "attributed clicks of the last 30 days) or P(slot 1),P(slot 2),… (default 1/log2(r + 1))",
            ),
        ] = None,
        salt: Annotated[str | None, typer.Option("--salt", help="assignment salt (default: random)")] = None,
        start: Annotated[str | None, typer.Option("--start", help="ISO-8601 start (default: now)")] = None,
        end: Annotated[
            str | None, typer.Option("--end", help="ISO-8601 end (default: until stopped)")
        ] = None,
        db: Db = None,
        as_json: Json = False,
    ) -> None:
        """Start an A/B or interleaving experiment on a placement (refused if it overlaps a running one)."""
        from pydantic import ValidationError

        from shelfwise.core.errors import ConfigError

        with user_errors():
            from shelfwise.evaluation.experiment_service import ExperimentService, ExperimentSpec

            lo, _, hi = traffic.partition(":")
            try:
                traffic_from, traffic_to = float(lo), float(hi)
            except ValueError:
                raise ConfigError(f"--traffic {traffic!r}: expected FROM:TO, e.g. 0:0.5") from None
            fields: dict[str, Any] = {
                "name": name,
                "placement": placement,
                "kind": kind,
                "arms": [_arm(a) for a in arm],
                "traffic_from": traffic_from,
                "traffic_to": traffic_to,
                "primary_metric": primary_metric,
                "guardrails": [_guardrail(g) for g in guardrail or []],
                "start_ts": _ms(start, "--start"),
                "end_ts": _ms(end, "--end"),
            }
            if salt is not None:
                fields["salt"] = salt
            fitted = examination is not None and examination.strip() == "fitted"
            if examination is not None and not fitted:
                try:
                    fields["examination"] = [float(x) for x in examination.split(",")]
                except ValueError:
                    raise ConfigError(
                        f"--examination {examination!r}: expected 'fitted' or numbers like 1,0.6,0.45"
                    ) from None
                fields["examination_source"] = "given with --examination"
            try:
                spec = ExperimentSpec(**fields)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "experiment"
                raise ConfigError(f"experiment {name!r}: {where}: {first['msg']}") from None
            with open_db(db) as store:
                svc = ExperimentService(store)
                if fitted:
                    if kind != "interleaving":
                        raise ConfigError(
                            "--examination is for interleaving experiments (--kind interleaving)"
                        )
                    curve, source = svc.fitted_examination(placement)
                    spec = spec.model_copy(update={"examination": curve, "examination_source": source})
                    typer.echo(
                        f"examination curve {source}: {', '.join(f'{x:g}' for x in curve[:10])}, …", err=True
                    )
                row = svc.create(spec)
            emit(_row(row), as_json, lambda o: f"created experiment {o['name']} on {o['placement']}")

    @experiment_app.command("status")
    def status(
        name: Annotated[str, typer.Argument(help="experiment name")], db: Db = None, as_json: Json = False
    ) -> None:
        """Results: SRM check, per-arm metrics with intervals, lifts, always-valid p, CUPED, guardrails."""

        with user_errors():
            from shelfwise.evaluation.experiment_service import ExperimentService

            with open_db(db) as store:
                out = ExperimentService(store).status(name)
            emit(_finite(out) if as_json else out, as_json, _status_human)

    @experiment_app.command("stop")
    def stop(
        name: Annotated[str, typer.Argument(help="experiment name")],
        reason: Annotated[str, typer.Option("--reason", help="why it stops")] = "stopped by an operator",
        db: Db = None,
        as_json: Json = False,
    ) -> None:
        """Stop an experiment: its traffic returns to the placement's default."""

        with user_errors():
            from shelfwise.evaluation.experiment_service import ExperimentService

            with open_db(db) as store:
                row = ExperimentService(store).stop(name, reason=reason)
            emit(_row(row), as_json, lambda o: f"stopped experiment {o['name']}")

    @experiment_app.command("list")
    def list_(
        placement: Annotated[str | None, typer.Option("--placement", help="only this placement")] = None,
        db: Db = None,
        as_json: Json = False,
    ) -> None:
        """Experiments, oldest first."""

        with user_errors():
            from shelfwise.evaluation.experiment_service import ExperimentService

            with open_db(db) as store:
                rows = [_row(r) for r in ExperimentService(store).list(placement=placement)]
            emit(
                {"experiments": rows},
                as_json,
                lambda o: (
                    "\n".join(f"{r['name']}\t{r['placement']}\t{r['status']}" for r in o["experiments"])
                    or "no experiments"
                ),
            )
