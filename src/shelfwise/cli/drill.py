"""``shelfwise drill``: disaster-recovery drills on a real loopback topology."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from shelfwise.cli.common import load_settings, user_errors

SCENARIO_HELP = (
    "all, replica-kill, store-outage, cache-outage, corrupt-model, bad-model, restore, crash-during-ingest, "
    "primary-loss, cache-primary-loss"
)


def register(app: typer.Typer) -> None:
    @app.command("drill")
    def drill(
        scenario: Annotated[
            list[str] | None, typer.Option("--scenario", help=f"repeatable: {SCENARIO_HELP} (default: all)")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
        report: Annotated[
            Path, typer.Option("--report", help="directory for drill.json, drill.md and timeline.png")
        ] = Path("var/reports/drill"),
        replicas: Annotated[int, typer.Option("--replicas", min=2, max=8)] = 2,
        events: Annotated[
            int, typer.Option("--events", min=2000, help="Online Retail lines loaded into the drill's store")
        ] = 20_000,
        rate: Annotated[float, typer.Option("--rate", min=1, max=200, help="requests per second")] = 30.0,
    ) -> None:
        """Start HAProxy, API replicas, a PostgreSQL database and Redis on 127.0.0.1, drive a bounded
        load, inject faults and measure RTO, RPO, error rate and latency. primary-loss and
        cache-primary-loss run on a second topology with its own PostgreSQL primary + synchronous
        standby and Redis + replica + three Sentinels (Debian's binaries, `make system`). Exit 1 when
        a scenario fails. Everything the drill starts is stopped, also when it fails."""
        import json

        from shelfwise.drills import run_drill

        with user_errors():
            load_settings()
            names = [s.strip() for item in scenario or ["all"] for s in item.split(",") if s.strip()]
            result = run_drill(
                names,
                report_dir=report,
                replicas=replicas,
                events=events,
                rate=rate,
                say=lambda m: typer.echo(m, err=True),
            )
        if as_json:
            sys.stdout.write(json.dumps(result, default=str) + "\n")
        else:
            from shelfwise.drills.report import markdown

            typer.echo(markdown(result))
        if not result["passed"]:
            raise typer.Exit(1)
