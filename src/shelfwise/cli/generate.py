"""`shelfwise generate`: a synthetic shop (events + catalogue) in files ingest reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import emit, user_errors


def register(app: typer.Typer) -> None:
    @app.command()
    def generate(
        out: Annotated[Path, typer.Option("--out", help="events file (.csv or .csv.gz), format csv")],
        events: Annotated[int, typer.Option("--events", min=1, help="number of events")] = 100_000,
        items: Annotated[int, typer.Option("--items", min=2, help="catalogue size")] = 10_000,
        users: Annotated[int, typer.Option("--users", min=1, help="number of shoppers")] = 10_000,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        days: Annotated[int, typer.Option("--days", min=1, help="period the events span")] = 365,
        items_out: Annotated[
            Path | None,
            typer.Option("--items-out", help="catalogue file (csv-items); default: NAME.items.csv[.gz]"),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
    ) -> None:
        """Write a synthetic shop: power-law items and shoppers, sessions, seasonality, carts,
        purchases and returns, catalogue churn. Streams: memory does not grow with --events."""
        from shelfwise.cli.progress import steps_bar

        with user_errors():
            import time

            from shelfwise.data.synthetic import ShopConfig, write_shop

            cfg = ShopConfig(events=events, items=items, users=users, seed=seed, days=days)
            started = time.perf_counter()
            with steps_bar() as bar:
                task = bar.add_task("generate", total=events)
                report: dict[str, Any] = write_shop(
                    cfg, out, items_out, progress=lambda done, _t: bar.update(task, completed=done)
                )
            report["seconds"] = round(time.perf_counter() - started, 3)
        emit(
            report,
            as_json,
            lambda r: (
                f"{r['events']:,} events ({', '.join(f'{k} {v:,}' for k, v in r['types'].items())}) "
                f"over {r['items']:,} items ({r['retired_items']:,} retired) and {r['users']:,} shoppers "
                f"in {r['seconds']:.1f} s\n  events: {r['events_file']} (--format csv)\n"
                f"  catalogue: {r['items_file']} (--format csv-items)"
            ),
        )
