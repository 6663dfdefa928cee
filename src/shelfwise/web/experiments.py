"""The experiments page (``/experiments``, admin): every experiment with its arms, exposure (units
and impressions per arm), the lift of each metric with its 95% interval, the sample-ratio-mismatch
check, the guardrails and a decision, read from the same ``ExperimentService`` the CLI uses
(``shelfwise experiment status``). Rendered on the server, every value escaped by the template.

Reading the page never writes: the always-valid p-value it shows is computed from the stored
running minimum without moving it (``status(persist=False)``); ``experiment status`` moves it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from shelfwise.core.logging import get_logger
from shelfwise.evaluation.experiment_service import ExperimentService
from shelfwise.evaluation.online_metrics import METRICS
from shelfwise.web.layout import render
from shelfwise.web.pages import Admin, AdminPage

log = get_logger(__name__)


def decision(status: dict[str, Any]) -> str:
    """What the numbers say to do, in words: a mismatch or a breached guardrail first."""
    if status["srm"].get("flagged"):
        return "do not read: the arms' sample ratio is off (fix the assignment, then restart)"
    if status.get("guardrails_breached"):
        return f"stop: guardrail breached ({', '.join(status['guardrails_breached'])})"
    winners, losers = [], []
    for c in status.get("comparisons", []):
        seq = c.get("sequential")
        if seq and seq["reject"]:
            (winners if seq["diff"] > 0 else losers).append(c["arm"])
    metric = status["primary_metric"]
    if winners:
        return f"ship {', '.join(winners)}: better than control on {metric} (always-valid test)"
    if losers:
        return f"keep control: {', '.join(losers)} worse on {metric} (always-valid test)"
    if status["status"] != "running":
        return "no difference detected before it stopped"
    return "keep running: no significant difference yet"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):+.2f}%"


def interleaving_view(status: dict[str, Any]) -> dict[str, Any]:
    """An interleaving experiment as the template shows it."""
    a, b = (x["arm"] for x in status["arms"])
    credits = []
    for key, r in status["credit"].items():
        credits.append(
            {
                "credit": key.replace("_", " "),
                "primary": key == status["primary_credit"],
                "mean": f"{r['mean']:+.4g}",
                "interval": "—" if r["se"] != r["se"] else f"[{r['low']:+.4g}, {r['high']:+.4g}]",
                "p": f"{r['sequential_p']:.4f}",
                "reject": bool(r["sequential_reject"]),
            }
        )
    preferred = status["preferred"]
    if preferred:
        decision_text = f"ship {preferred}: shoppers credibly prefer its picks (always-valid test)"
    elif status["status"] != "running":
        decision_text = "no preference detected before it stopped"
    else:
        decision_text = "keep running: no credible preference yet"
    return {
        "name": status["name"],
        "kind": "interleaving",
        "placement": status["placement"],
        "status": status["status"],
        "arms": [
            {
                "arm": x["arm"],
                "role": x["role"],
                "version": x["version"] or "active",
                "index_version": x.get("index_version") or "active",
                "search_mode": x.get("search_mode") or "its own",
            }
            for x in status["arms"]
        ],
        "search": status["placement"] == "search",
        "examination": status.get("examination_source") or "",
        "units": status["units"],
        "impressions": status["impressions"],
        "clicks": status["clicks"],
        "wins": status["impression_wins"],
        "credits": credits,
        "pair": f"{a} vs {b}",
        "decision": decision_text,
    }


def view(svc: ExperimentService, status: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """One experiment as the template shows it (strings, numbers; the template escapes)."""
    if status.get("kind") == "interleaving":
        return interleaving_view(status)
    arms = {a["name"]: a for a in spec["arms"]}
    rows = []
    for a in status["arms"]:
        s = arms.get(a["arm"], {})
        totals = a.get("totals") or {}
        rows.append(
            {
                "arm": a["arm"],
                "share": f"{100 * float(s.get('share', 0)):.1f}%",
                "version": s.get("version") or "active",
                "index_version": s.get("index_version") or "—",
                "units": a["units"],
                "impressions": int(totals.get("impressions", 0)),
                "metrics": {m: a.get("metrics", {}).get(m, {}).get("value") for m in METRICS},
            }
        )
    comparisons = []
    for c in status.get("comparisons", []):
        lifts = []
        for metric, lift in (c.get("lifts") or {}).items():
            if "lift" in lift:
                lifts.append((metric, _pct(lift["lift"]), f"[{_pct(lift['low'])}, {_pct(lift['high'])}]"))
            else:
                lifts.append((metric, "—", lift.get("note", "")))
        seq = c.get("sequential") or {}
        comparisons.append(
            {
                "arm": c["arm"],
                "control": c["control"],
                "note": c.get("note", ""),
                "lifts": lifts,
                "p": None if not seq else f"{seq['p']:.4f}",
                "reject": bool(seq.get("reject")),
                "guardrails": c.get("guardrails", []),
            }
        )
    srm = status["srm"]
    return {
        "name": status["name"],
        "kind": "ab",
        "placement": status["placement"],
        "status": status["status"],
        "primary_metric": status["primary_metric"],
        "arms": rows,
        "comparisons": comparisons,
        "srm_flagged": bool(srm.get("flagged")),
        "srm_p": f"{float(srm.get('p', 1.0)):.4g}",
        "srm_counts": srm.get("counts", {}),
        "decision": decision(status),
    }


def mount_experiments(app: FastAPI, svc: ExperimentService) -> None:
    """Add ``/experiments`` (the page) and ``/experiments/api`` (the same, as JSON) to ``app``."""

    def read() -> tuple[list[dict[str, Any]], list[str]]:
        shown, failed = [], []
        for row in svc.list():
            try:
                shown.append(view(svc, svc.status(row.name, persist=False), row.spec))
            except Exception as exc:  # one unreadable experiment does not hide the others
                log.warning("experiment status failed", experiment=row.name, error=repr(exc))
                failed.append(row.name)
        return shown, failed

    @app.get("/experiments", response_class=HTMLResponse, include_in_schema=False)
    def experiments_page(caller: AdminPage) -> str:
        shown, failed = read()
        return render(
            "experiments.html",
            title="Experiments",
            here="/experiments",
            session=caller.session,
            experiments=shown,
            failed=failed,
            metrics=list(METRICS),
        )

    @app.get("/experiments/api", include_in_schema=False)
    def experiments_json(_: Admin) -> dict[str, Any]:
        shown, failed = read()
        return {"experiments": shown, "failed": failed}
