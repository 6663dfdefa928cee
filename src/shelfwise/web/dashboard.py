"""The analytics dashboard's data: the full analytics report (built once per store snapshot, in
a child process, and kept under ``var/dashboard/``) and a live funnel explorer that re-queries the
snapshot for the dimension the user picks (each answer well under a second).

No HTTP here: ``shelfwise.web.pages`` turns this into pages.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from shelfwise.store.analytical import AnalyticalStore, shown_url

Dimension = Literal["category", "brand", "day", "total"]
DIMENSIONS: tuple[Dimension, ...] = ("category", "brand", "day", "total")


class AnalyticsDashboard:
    """One store's analytics for the web app. Thread-safe; the report builds in a worker thread."""

    def __init__(self, store_url: str, var_dir: Path) -> None:
        self.store_url = store_url
        # named by the URL without its password: a hash of the password would let anyone who can
        # list var/ test guesses of it offline
        self.root = var_dir / "dashboard" / hashlib.sha256(shown_url(store_url).encode()).hexdigest()[:16]
        self.var_dir = var_dir
        self.cache_dir = var_dir / "cache"  # the same place `shelfwise analytics` keeps it
        self._lock = threading.Lock()
        # one DuckDB connection refuses a second call while busy ("connection is busy"), and a
        # reopen must not close it under a running query: queries take turns (each well under 1 s)
        self._query_lock = threading.Lock()
        self._db: AnalyticalStore | None = None
        # children are tracked under a lock of their own: ``store()`` runs one while holding ``_lock``
        self._children_lock = threading.Lock()
        self._children: set[subprocess.Popen[str]] = set()
        self._closed = False
        self._db_opened = 0.0
        self._builder: threading.Thread | None = None
        self.state: dict[str, Any] = {"status": "not built"}
        done = self.root / "report.json"
        if done.is_file():
            self.state = {"status": "ready", "built_at": done.stat().st_mtime}
        # the forecast page's data, beside the report (a report build replaces its directory)
        self.forecast_path = self.root.with_name(self.root.name + ".forecast.json")
        self._forecaster: threading.Thread | None = None
        self.forecast_state: dict[str, Any] = (
            {"status": "ready", "built_at": self.forecast_path.stat().st_mtime}
            if self.forecast_path.is_file()
            else {"status": "not built"}
        )
        self._headline: tuple[float, dict[str, Any]] | None = None
        self._headliner: threading.Thread | None = None
        self.headline_error = ""

    # --- the snapshot ------------------------------------------------------------------------
    def store(self, *, max_age_s: float = 10.0) -> AnalyticalStore:
        """The analytical snapshot, reopened when older than ``max_age_s`` (new events show up).

        A SQLite store is snapshotted by a child process and read here from the snapshot's Arrow
        files (see ``AnalyticalStore.latest_snapshot``): the server's own SQLite connections must
        not share the process with ADBC's SQLite."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the dashboard is closed (the server is stopping)")
            if self._db is None or time.monotonic() - self._db_opened > max_age_s:
                # the old snapshot is not closed here: a query in another thread may still be reading
                # it; it closes when the last reference to it goes
                self._db, self._db_opened = self._open(), time.monotonic()
            return self._db

    def _open(self) -> AnalyticalStore:
        if not self.store_url.startswith("sqlite"):
            return AnalyticalStore.open(self.store_url, cache_dir=self.cache_dir)
        db = AnalyticalStore.latest_snapshot(self.store_url, self.cache_dir)
        if db is not None and db.current:
            return db
        if db is not None:
            db.close()
        self._child("analytics", "funnel", "--by", "total", "--json")  # writes the snapshot
        db = AnalyticalStore.latest_snapshot(self.store_url, self.cache_dir)
        if db is None:
            raise RuntimeError(f"no analytics snapshot of {shown_url(self.store_url)} under {self.cache_dir}")
        return db

    def _child(self, *args: str, timeout: float = 600) -> str:
        """Run a ``shelfwise`` command on this store in a child process; its stdout.

        The store URL (a PostgreSQL password, maybe) goes in the child's environment, which only
        its owner can read (``/proc/PID/environ`` is 0400), never on its command line, which every
        user of the machine sees in ``ps``."""
        cmd = [sys.executable, "-m", "shelfwise.cli.main", *args]
        env = {**os.environ, "SHELFWISE_VAR_DIR": str(self.var_dir), "SHELFWISE_DB_URL": self.store_url}
        with self._children_lock:
            if self._closed:
                raise RuntimeError("the dashboard is closed")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            self._children.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"{' '.join(args[:2])} took over {timeout:.0f} s") from None
        finally:
            with self._children_lock:
                self._children.discard(proc)
        if proc.returncode != 0:
            lines = err.strip().splitlines()
            # the child's last line may quote the store URL: masked before it reaches a page or a log
            reason = lines[-1] if lines else f"{' '.join(args)} exited {proc.returncode}"
            raise RuntimeError(self.scrub(reason))
        return out

    # --- live funnel -------------------------------------------------------------------------
    def _funnel_frame(self, by: Dimension, top: int) -> Any:
        """The funnel by ``by``: the ``top`` groups, or for days the latest ``top`` days in order."""
        from shelfwise.analytics.funnel import funnel

        with self._query_lock:
            frame = funnel(self.store(), by=by, top=top)
        return frame.sort("key").tail(top) if by == "day" else frame

    def funnel(self, by: Dimension, *, top: int = 20) -> dict[str, Any]:
        started = time.perf_counter()
        frame = self._funnel_frame(by, top)
        return {
            "by": by,
            "columns": frame.columns,
            "rows": [[_plain(v) for v in row] for row in frame.iter_rows()],
            "seconds": round(time.perf_counter() - started, 3),
        }

    def funnel_svg(self, by: Dimension, *, top: int = 20) -> bytes:
        from shelfwise.analytics import plots

        frame = self._funnel_frame(by, top)
        buf = io.BytesIO()
        with plots.RENDER_LOCK:
            plots.save(plots.funnel_chart(frame, title=f"Funnel by {by}"), buf, format="svg")
        return buf.getvalue()

    # --- the purchase-only headline ----------------------------------------------------------
    def headline(self, *, top: int = 12) -> dict[str, Any]:
        """Revenue, orders, basket and repeat rate from purchase events only
        (``analytics.headline``), recomputed when the snapshot is reopened."""
        from shelfwise.analytics.headline import purchase_headline

        db = self.store()
        opened = self._db_opened  # a new snapshot: a new headline
        cached = self._headline
        if cached is not None and cached[0] == opened:
            return cached[1]
        started = time.perf_counter()
        with self._query_lock:
            found = purchase_headline(db, top=top)
        found["seconds"] = round(time.perf_counter() - started, 3)
        self._headline = (opened, found)
        self.headline_error = ""
        return found

    def headline_now(self) -> dict[str, Any] | None:
        """The headline without waiting: the last one computed (None before the first), and a
        refresh in the background when the snapshot has changed since (a page never waits for a
        snapshot to be made)."""
        cached = self._headline
        with self._lock:
            fresh = cached is not None and self._db is not None and cached[0] == self._db_opened
            if not fresh and (self._headliner is None or not self._headliner.is_alive()):
                self._headliner = threading.Thread(
                    target=self._headline_quietly, name="dashboard-headline", daemon=True
                )
                self._headliner.start()
        return cached[1] if cached is not None else None

    def _headline_quietly(self) -> None:
        try:
            self.headline()
        except Exception as exc:  # the page says the headline is not there; the API answers 503
            self.headline_error = self.scrub(f"{type(exc).__name__}: {exc}")

    # --- the demand forecast -----------------------------------------------------------------
    def build_forecast(self, *, wait: bool = False, top: int = 20, horizon: int = 14) -> dict[str, Any]:
        """Start forecasting the next ``horizon`` days of the top items and categories (LightGBM
        point and quantile models, with their back-test) in a child process, unless one runs."""
        with self._lock:
            if self._forecaster is None or not self._forecaster.is_alive():
                self.forecast_state = {"status": "building", "started_at": time.time()}
                self._forecaster = threading.Thread(
                    target=self._build_forecast, args=(top, horizon), name="dashboard-forecast", daemon=True
                )
                self._forecaster.start()
            worker = self._forecaster
        if wait:
            worker.join()
        return dict(self.forecast_state)

    def _build_forecast(self, top: int, horizon: int) -> None:
        try:
            started = time.perf_counter()
            levels = {}
            for level in ("item", "category"):
                out = self._child(
                    "analytics",
                    "forecast",
                    "--ahead",
                    str(horizon),
                    "--level",
                    level,
                    "--top",
                    str(top),
                    "--json",
                )
                levels[level] = json.loads(out)
            self.root.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.forecast_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"levels": levels, "built_at": time.time()}))
            tmp.replace(self.forecast_path)
            self.forecast_state = {
                "status": "ready",
                "built_at": time.time(),
                "seconds": round(time.perf_counter() - started, 1),
            }
        except Exception as exc:  # shown on the page; the server keeps running
            self.forecast_state = {"status": "failed", "error": self.scrub(f"{type(exc).__name__}: {exc}")}

    def forecast(self) -> dict[str, Any] | None:
        """The latest forecast (both levels), or None before the first is built."""
        if not self.forecast_path.is_file():
            return None
        return dict(json.loads(self.forecast_path.read_text()))

    def forecast_svg(self, level: str, *, series: int = 6) -> bytes | None:
        """Small multiples of the first ``series`` series of ``level``: recent actual units, the
        forecast and its interval band. None before a forecast exists."""
        found = self.forecast()
        if found is None or level not in found["levels"]:
            return None
        from shelfwise.analytics import plots

        buf = io.BytesIO()
        with plots.RENDER_LOCK:
            plots.save(plots.forecast_ahead_chart(found["levels"][level], series=series), buf, format="svg")
        return buf.getvalue()

    # --- differentially private aggregates ----------------------------------------------------
    def privacy(self, *, releases: int = 20) -> dict[str, Any]:
        """The store's ε budget (total, spent, left) and its latest releases."""
        from shelfwise.store import open_store
        from shelfwise.store.ledger import PrivacyLedger

        with open_store(self.store_url) as store:
            ledger = PrivacyLedger(store)
            return {**ledger.summary(), "ledger": [r.to_dict() for r in ledger.releases(limit=releases)]}

    def private_release(
        self, query: str, epsilon: float, *, by: Dimension = "category", top: int = 20
    ) -> dict[str, Any]:
        """Publish one private aggregate (``shelfwise.analytics.private.QUERIES``), spending
        ``epsilon`` from the store's ledger before any noise is drawn: its noisy rows, what it cost
        and what is left. Past the budget: ``PrivacyBudgetExceeded`` and nothing is recorded."""
        from shelfwise.analytics import private
        from shelfwise.store import open_store
        from shelfwise.store.ledger import PrivacyLedger

        with open_store(self.store_url) as store:
            ledger = PrivacyLedger(store)
            ledger.require(query, epsilon)  # refused before the snapshot is read
            with self._query_lock:
                out = private.release(self.store(), ledger, query, epsilon=epsilon, by=by, top=top)
            rows = out.to_dict()
            return {
                **rows,
                "columns": list(out.table.columns),
                "rows": [[_plain(v) for v in row] for row in out.table.iter_rows()],
                "budget": ledger.summary(),
            }

    # --- the full report ---------------------------------------------------------------------
    def build(self, *, wait: bool = False) -> dict[str, Any]:
        """Start (re)building the report unless a build is running; ``wait`` blocks until done."""
        with self._lock:
            if self._builder is None or not self._builder.is_alive():
                self.state = {"status": "building", "started_at": time.time()}
                self._builder = threading.Thread(target=self._build, name="dashboard-report", daemon=True)
                self._builder.start()
            builder = self._builder
        if wait:
            builder.join()
        return dict(self.state)

    def _build(self, *, attempts: int = 3) -> None:
        """``shelfwise report`` in a child process (it reads the store with ADBC, and keeps the
        server's interpreter free while it works). The report names shoppers (likely bots, the
        marketing list), so it is published only if nobody it names was erased while it was built
        (``publish_checked``); otherwise it is discarded and built again."""
        from shelfwise.core.clock import now_ms
        from shelfwise.store.erasure import ErasedDuringBuild, publish_checked

        try:
            for attempt in range(1, attempts + 1):
                tmp = self.root.with_name(self.root.name + ".building")
                started = now_ms()
                summary = json.loads(self._child("report", "--out", str(tmp), "--json"))
                try:
                    publish_checked(tmp, self.root, erased_since=self._erased_since, started_ms=started)
                except ErasedDuringBuild:
                    if attempt == attempts:
                        raise
                    continue
                self.state = {"status": "ready", "built_at": time.time(), "seconds": summary["seconds"]}
                return
        except Exception as exc:  # shown on the page; the server keeps running
            self.state = {"status": "failed", "error": self.scrub(f"{type(exc).__name__}: {exc}")}

    def _erased_since(self, since_ms: int) -> list[str]:
        from shelfwise.store import open_store

        with open_store(self.store_url) as store:
            return store.erased_since(since_ms)

    def scrub(self, text: str) -> str:
        """``text`` with the store URL and its password masked (an error from the child may quote them)."""
        import sqlalchemy as sa

        text = text.replace(self.store_url, shown_url(self.store_url))
        try:
            password = sa.make_url(self.store_url).password
        except Exception:
            password = None
        return text.replace(str(password), "***") if password else text

    def sections(self) -> str | None:
        path = self.root / "sections.html"
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def summary(self) -> dict[str, Any] | None:
        """The report's summary, without the store it came from (a report built by an older
        shelfwise holds the raw URL, password included, under ``source``)."""
        path = self.root / "report.json"
        if not path.is_file():
            return None
        summary = json.loads(path.read_text())
        summary.pop("source", None)
        return dict(json.loads(self.scrub(json.dumps(summary))))

    def file(self, name: str) -> Path | None:
        """A file of the built report (plots, the marketing CSV); None for anything else."""
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith((".png", ".csv")):
            return None
        path = self.root / name
        return path if path.is_file() else None

    def close(self) -> None:
        """Close the snapshot and stop any child still building (a server that stops leaves no
        report process running behind it)."""
        with self._children_lock:
            self._closed = True
            children = list(self._children)
        for proc in children:
            proc.terminate()
        for proc in children:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        # a query running in another thread (the background headline) finishes first: DuckDB
        # refuses to close a connection that is busy
        with self._query_lock, self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _plain(v: Any) -> Any:
    if isinstance(v, float):
        return None if v != v else round(v, 4)
    if isinstance(v, int | str | bool) or v is None:
        return v
    return str(v)
