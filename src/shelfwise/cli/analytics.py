"""`shelfwise` commands for analytics; heavy imports go inside the commands.

shelfwise analytics funnel|rfm|churn|forecast|anomalies [--db URL] [--json]
shelfwise analytics marketing-list --ids FILE [--list FILE] [--out FILE] [--db URL] [--json]
shelfwise report --out DIR [--db URL]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import DbOption, JsonOption, emit, fail, load_settings, user_errors

analytics_app = typer.Typer(
    help="Shopper-behaviour analytics: funnels, segments, churn, demand, anomalies.", no_args_is_help=True
)
TzOpt = Annotated[str, typer.Option("--tz", help="the shop's time zone, for hour-of-day and day-of-week")]


@contextmanager
def _analytical(db: str | None, label: str) -> Iterator[tuple[Any, Callable[[str, int, int], None]]]:
    """The store's analytical snapshot and a step progress bar (stderr, erased at the end); an
    analysis the data cannot support becomes a one-line error."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from shelfwise.core.errors import ShelfwiseError
    from shelfwise.store.analytical import AnalyticalStore

    settings = load_settings()
    url = db or settings.store_url
    console = Console(stderr=True)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task(label, total=None)

    def step(stage: str, done: int, total: int) -> None:
        bar.update(task, description=f"{label}: {stage}", completed=done, total=total)

    with bar:
        step("reading the store", 0, 1)
        store = AnalyticalStore.open(url, cache_dir=settings.var_dir / "cache")
        try:
            yield store, step
        except ValueError as exc:
            raise ShelfwiseError(str(exc), hint="ingest more history, or pick a shorter window") from None
        finally:
            store.close()


def _records(df: Any, limit: int | None = None) -> list[dict[str, Any]]:
    return (df.head(limit) if limit else df).to_dicts()


def _lines(df: Any, limit: int = 20) -> str:
    import polars as pl

    with pl.Config(
        tbl_rows=limit, tbl_cols=12, fmt_str_lengths=40, tbl_width_chars=200, tbl_hide_dataframe_shape=True
    ):
        return str(df.head(limit))


@analytics_app.command("funnel")
def funnel_cmd(
    db: DbOption = None,
    by: Annotated[str, typer.Option("--by", help="category, brand, day or total")] = "category",
    top: Annotated[int, typer.Option("--top", min=1, help="groups to show (by views + purchases)")] = 20,
    as_json: JsonOption = False,
) -> None:
    """View → cart → purchase sessions with conversion and drop-off."""
    if by not in ("category", "brand", "day", "total"):
        fail("--by must be category, brand, day or total", 2)
    with user_errors(), _analytical(db, "funnel") as (store, _):
        from shelfwise.analytics.funnel import funnel

        df = funnel(store, by=by, top=top)  # type: ignore[arg-type]
        emit({"by": by, "rows": _records(df)}, as_json, lambda _: _lines(df, top))


@analytics_app.command("rfm")
def rfm_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """RFM segments (customers, recency, frequency, value) and the 12-month lifetime value."""
    with user_errors(), _analytical(db, "rfm") as (store, _):
        from shelfwise.analytics.segments import clv, rfm, segment_summary

        table = rfm(store)
        summary = segment_summary(table)
        value = clv(table)
        payload = {
            "customers": table.height,
            "segments": _records(summary),
            "clv_total_12m": float(value["clv"].sum()) if value.height else 0.0,
            "top_clv": _records(value, 10),
        }
        emit(payload, as_json, lambda p: _lines(summary) + f"\n12-month CLV total: {p['clv_total_12m']:,.0f}")


@analytics_app.command("churn")
def churn_cmd(
    db: DbOption = None,
    window_days: Annotated[
        int, typer.Option("--window-days", min=7, help="no purchase for this long = churned")
    ] = 90,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at-risk customers to list")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Train and test a churn model on a temporal split; list customers at risk with their drivers."""
    with user_errors(), _analytical(db, "churn") as (store, step):
        from shelfwise.analytics.churn import at_risk, predict_churn

        step("training and testing", 1, 2)
        result = predict_churn(store, window_days=window_days)
        risky = at_risk(result, limit=limit)
        payload = {**result.metrics, "calibration": _records(result.calibration), "at_risk": _records(risky)}

        def human(p: dict[str, Any]) -> str:
            lo, hi = p["auc_ci95"]
            return (
                f"churn AUC {p['auc']:.3f} (95% CI {lo:.3f}–{hi:.3f}; "
                f"recency alone {p['auc_recency_only']:.3f}) "
                f"on {p['test_customers']:,} customers, {p['test_churn_rate']:.0%} churned\n"
                + _lines(risky, limit)
            )

        emit(payload, as_json, human)


@analytics_app.command("forecast")
def forecast_cmd(
    db: DbOption = None,
    level: Annotated[str, typer.Option("--level", help="item or category")] = "item",
    freq: Annotated[str, typer.Option("--freq", help="day or week")] = "day",
    top: Annotated[int, typer.Option("--top", min=1, help="series: the best sellers")] = 100,
    ahead: Annotated[
        int | None,
        typer.Option(
            "--ahead",
            min=1,
            max=56,
            help="forecast the next N periods after the data, with intervals (and their back-test)",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, max=0.99, help="with --ahead: the prediction interval")
    ] = 0.8,
    as_json: JsonOption = False,
) -> None:
    """Forecast demand and compare it with a seasonal-naive baseline (WAPE, MASE) on the last weeks;
    with --ahead N, the next N days or weeks with prediction intervals and their back-test coverage."""
    if level not in ("item", "category") or freq not in ("day", "week"):
        fail("--level must be item or category, --freq day or week", 2)
    if ahead is not None:
        _forecast_ahead(db, level, freq, top, ahead, interval, as_json)
        return
    with user_errors(), _analytical(db, "forecast") as (store, step):
        from shelfwise.analytics.forecast import forecast_demand

        step("training and testing", 1, 2)
        result = forecast_demand(store, level=level, freq=freq, top=top)  # type: ignore[arg-type]
        payload = {"level": level, "freq": freq, **result.metrics, "per_series": _records(result.per_series)}

        def human(p: dict[str, Any]) -> str:
            verdict = "beats" if p["wape_model"] < p["wape_naive"] else "does NOT beat"
            return (
                f"{p['series']} {level} series, {freq}ly, test {p['test_start']}–{p['test_end']}: "
                f"LightGBM WAPE {p['wape_model']:.3f} MASE {p['mase_model']:.3f}; seasonal-naive "
                f"WAPE {p['wape_naive']:.3f} MASE {p['mase_naive']:.3f} — the model {verdict} the baseline"
            )

        emit(payload, as_json, human)


def _forecast_ahead(
    db: str | None, level: str, freq: str, top: int, horizon: int, interval: float, as_json: bool
) -> None:
    with user_errors(), _analytical(db, "forecast") as (store, step):
        from shelfwise.analytics.forecast import ahead_payload, forecast_ahead

        step("training the point and interval models", 1, 2)
        result = forecast_ahead(
            store,
            level=level,  # type: ignore[arg-type]
            freq=freq,  # type: ignore[arg-type]
            top=top,
            horizon=horizon,
            interval=interval,
        )
        payload = ahead_payload(store, result)

        def human(p: dict[str, Any]) -> str:
            b = p["backtest"]
            head = (
                f"next {p['horizon']} {freq}s of the top {b['series']} {level} series "
                f"({p['forecasts'][0]['period']}–{p['forecasts'][-1]['period']}), "
                f"{p['interval']:.0%} intervals; back-test {b['test_start']}–{b['test_end']}: "
                f"WAPE {b['wape_model']:.3f} (seasonal-naive {b['wape_naive']:.3f}), "
                f"interval coverage {b['interval_coverage']:.1%}"
            )
            import polars as pl

            totals = (
                pl.DataFrame(p["forecasts"])
                .group_by("key", maintain_order=True)
                .agg(pl.col("forecast").sum(), pl.col("lower").sum(), pl.col("upper").sum())
            )
            return head + "\n" + _lines(totals, top)

        emit(payload, as_json, human)


@analytics_app.command("headline")
def headline_cmd(
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="countries and categories to list")] = 15,
    as_json: JsonOption = False,
) -> None:
    """Revenue, orders, basket size and repeat rate from purchases only, by month, country, category."""
    with user_errors(), _analytical(db, "headline") as (store, _):
        from shelfwise.analytics.headline import purchase_headline

        payload = purchase_headline(store, top=top)

        def human(p: dict[str, Any]) -> str:
            t = p["totals"]
            rate = "-" if t["repeat_rate"] is None else f"{t['repeat_rate']:.1%}"
            return (
                f"revenue {t['revenue']:,.2f} from {t['orders']:,} orders (AOV {t['aov']}), "
                f"{t['customers']:,} known customers, repeat rate {rate}\n" + p["definition"]
            )

        emit(payload, as_json, human)


@analytics_app.command("anomalies")
def anomalies_cmd(
    db: DbOption = None,
    inject: Annotated[
        int, typer.Option("--inject", min=1, help="synthetic anomalies of each kind to test on")
    ] = 30,
    as_json: JsonOption = False,
) -> None:
    """Bots, fraud-like orders, return abuse, demand spikes, rating bursts; tested on injected ones."""
    with user_errors(), _analytical(db, "anomalies") as (store, step):
        from shelfwise.analytics import anomalies

        step("scanning", 1, 3)
        bots = anomalies.bot_users(store).filter("flagged")
        fraud = anomalies.fraud_orders(store).filter("flagged")
        returns = anomalies.return_abusers(store).filter("flagged")
        spikes = anomalies.demand_spikes(store).filter("flagged")
        step("testing on injected anomalies", 2, 3)
        evaluation = anomalies.evaluate_detectors(store, n=inject)
        payload = {
            "evaluation": _records(evaluation),
            "bot_users": _records(bots.select("user_id", "score", "reason"), 100),
            "fraud_orders": _records(fraud.select("user_id", "order_id", "value", "reason"), 100),
            "return_abusers": _records(returns, 100),
            "counts": {
                "bot_users": bots.height,
                "fraud_orders": fraud.height,
                "return_abusers": returns.height,
                "demand_spikes": spikes.height,
                "rating_bursts": anomalies.rating_bursts(store).filter("flagged").height,
            },
        }
        emit(
            payload,
            as_json,
            lambda p: (
                "in the data: "
                + ", ".join(f"{k} {v:,}" for k, v in p["counts"].items())
                + "\non injected anomalies:\n"
                + _lines(evaluation)
            ),
        )


@analytics_app.command("marketing-list")
def marketing_list_cmd(
    ids: Annotated[
        Path, typer.Option("--ids", help="the shop's customer ids: a CSV with one id column (or customer_id)")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="write the CSV here (default: standard output)")
    ] = None,
    from_list: Annotated[
        Path | None,
        typer.Option("--list", help="a report's marketing_lists.csv (default: computed from the store now)"),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The marketing list with the shop's own customer ids: each id is pseudonymised with the store's
    key and matched to the list (the store keeps no raw ids); erased shoppers never appear."""
    import polars as pl

    from shelfwise.analytics.marketing import ShopIdsError, read_shop_ids, with_shop_ids
    from shelfwise.data.privacy import Pseudonymizer
    from shelfwise.store import open_store
    from shelfwise.store.analytical import shown_url, sqlite_path

    with user_errors():
        try:
            shop_ids = read_shop_ids(ids.read_text(encoding="utf-8-sig"), field=f"--ids {ids}")
        except UnicodeDecodeError:
            fail(f"--ids {ids}: not UTF-8 text", 2)
        except ShopIdsError as exc:
            fail(str(exc), 2)
        settings = load_settings()
        url = db or settings.store_url
        store_file = sqlite_path(url)
        if store_file is not None and not store_file.exists():
            fail(f"no store at {shown_url(url)}: ingest events first, or pass --db", 3)
        pseudonymize = Pseudonymizer(settings.resolved_pseudonym_key(create=False))
        if from_list is not None:
            try:
                lists = pl.read_csv(from_list, schema_overrides={"user_id": pl.String, "category": pl.String})
            except (pl.exceptions.PolarsError, ValueError) as exc:
                fail(f"--list {from_list}: not a marketing list CSV ({exc})".splitlines()[0], 2)
            if "user_id" not in lists.columns:
                fail(f"--list {from_list}: has no user_id column (use a report's marketing_lists.csv)", 2)
        else:
            with _analytical(db, "marketing list") as (store, step):
                from shelfwise.analytics.churn import predict_churn
                from shelfwise.analytics.marketing import category_affinity, marketing_lists

                step("scoring churn risk", 1, 2)
                lists = marketing_lists(predict_churn(store).scores, category_affinity(store))
        with open_store(url) as store_:
            result = with_shop_ids(lists, shop_ids, pseudonymize, erased_among=store_.erased_among)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            result.table.write_csv(out)
        payload: dict[str, Any] = {**result.counts(), "out": str(out) if out else None}
        if as_json:
            payload["rows"] = None if out else _records(result.table)
            emit(payload, True, str)
        elif out is None:
            sys.stdout.write(result.table.write_csv())
            typer.echo(_counts_line(payload), err=True)
        else:
            typer.echo(_counts_line(payload) + f"; written to {out}")


def _counts_line(p: dict[str, Any]) -> str:
    return (
        f"{p['matched_rows']:,} rows with the shop's ids "
        f"({p['ids_matched']:,} of {p['ids_given']:,} ids matched); "
        f"{p['unmatched_rows']:,} rows left out (no id given), {p['erased_rows']:,} erased"
    )


def _check_tz(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--tz: unknown time zone {tz!r} (use a name such as Europe/London)", 2)


def report(
    out: Annotated[Path, typer.Option("--out", help="directory for index.html, plots and report.json")],
    db: DbOption = None,
    tz: TzOpt = "UTC",
    as_json: JsonOption = False,
) -> None:
    """Write the analytics report (HTML with plots) for the whole store."""
    _check_tz(tz)
    with user_errors(), _analytical(db, "report") as (store, step):
        from shelfwise.analytics.report import build_report
        from shelfwise.core.clock import now_ms
        from shelfwise.store.analytical import erased_since
        from shelfwise.store.erasure import building_path, publish_checked

        # the report names shoppers (likely bots, the marketing list): it is published only if
        # none of them was erased while it was built (the snapshot was read before that)
        started, tmp = now_ms() - int(store.load_seconds * 1000), building_path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = build_report(store, tmp, tz=tz, step=step)
        publish_checked(
            tmp, out, erased_since=lambda ms: erased_since(store.url, ms), started_ms=started, merge=True
        )
        summary["index"] = str(out / "index.html")
        emit(summary, as_json, lambda s: f"report written to {s['index']} in {s['seconds']:.1f} s")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(analytics_app, name="analytics")
    app.command("report")(report)
