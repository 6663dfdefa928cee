"""``shelfwise serve`` on big catalogues (issue 19): the issue's 37,355-item shop and a 1M-item one.

For each shop: ``shelfwise generate`` writes it (seed 19); the catalogue goes into a fresh SQLite
store — the 37k shop through ``shelfwise ingest items`` (the user's path), the 1M shop in bulk
(``Store.upsert_items`` in 50,000-item batches, no quality gate: ``ingest items`` checks and
annotates ~2,000 items/s on this shared machine, 8+ minutes for 1M) — and the events through
``shelfwise ingest events``. Then ``shelfwise serve`` (one worker) starts on the store with no
model: it trains the default (``--model auto``: chosen by catalogue size and memory) and serves.
Measured: seconds from launch to ``/readyz`` = 200, the server's peak resident set while starting
(sampled every 0.2 s over its process tree) and once ready, and that search, similar items and the
anonymous home recommendations answer (status, result count, latency). The machine's load average
is recorded with each figure: the machine is shared.

    flock /tmp/shelfwise-bench.lock python -m benchmarks.run serve_scale

``SHELFWISE_SERVE_SCALE_SHOPS`` picks shops by catalogue size (``37k``, ``1M``, or item counts,
comma-separated; default: all); the rows of the shops not picked are kept from the previous
``results/serve_scale.json`` (with the time they were measured), so re-running one shop does not
drop the other's figures. ``SHELFWISE_SERVE_SCALE_KEEP=<dir>`` keeps each shop's var dir (store,
registry, generated files) under ``<dir>/<items>`` for a later benchmark (``bench_sizing``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_serving import _tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
# (name, items, users, events, catalogue path)
# (name, items, users, events, catalogue path, seconds to follow the background work once ready)
SHOPS: list[tuple[str, int, int, int, str, float]] = [
    ("issue's shop", 37_355, 20_000, 300_000, "ingest", 150.0),
    ("1M items", 1_000_000, 60_000, 200_000, "bulk", 0.0),
]
RESULT = ROOT / "benchmarks" / "results" / "serve_scale.json"
KEEP = os.environ.get("SHELFWISE_SERVE_SCALE_KEEP", "")
START_TIMEOUT = float(os.environ.get("SHELFWISE_BENCH_START_SECONDS", 360))
SHOP_BUDGET = float(os.environ.get("SHELFWISE_BENCH_SHOP_SECONDS", 420))


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cli(args: list[str], env: dict[str, str], timeout: float) -> tuple[float, dict[str, Any]]:
    """One ``shelfwise`` step as a user runs it (``--json``): its wall seconds and its last JSON line."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "shelfwise.cli.main", *args, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        raise RuntimeError(f"shelfwise {' '.join(args[:2])}: exit {done.returncode}: {done.stderr[-800:]}")
    lines = done.stdout.strip().splitlines()
    return took, (json.loads(lines[-1]) if lines else {})


def bulk_items(db: str, path: str) -> None:
    """The generated catalogue into the store in 50,000-item batches (no gate; see the docstring)."""
    from shelfwise.data.schemas import Item
    from shelfwise.store import open_store

    with open_store(f"sqlite:///{db}") as store, gzip.open(path, "rt", newline="") as fh:
        batch: list[Item] = []
        for row in csv.DictReader(fh):
            batch.append(
                Item(
                    item_id=row["item_id"],
                    title=row["title"],
                    category=row["category"],
                    brand=row["brand"],
                    price=float(row["price"]),
                    currency=row["currency"],
                    available=row["available"] == "true",
                    source="csv-items",
                )
            )
            if len(batch) >= 50_000:
                store.upsert_items(batch)
                batch = []
        if batch:
            store.upsert_items(batch)


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(port: int, path: str) -> dict[str, Any]:
    import httpx

    started = time.perf_counter()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)
    except httpx.HTTPError as exc:
        return {"path": path, "status": None, "error": type(exc).__name__}
    ms = round((time.perf_counter() - started) * 1000, 1)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    results = body.get("hits", body.get("items", [])) if isinstance(body, dict) else []
    return {"path": path, "status": r.status_code, "results": len(results or []), "ms": ms}


def _search_state(port: int, word: str) -> dict[str, Any]:
    import httpx

    try:
        body = httpx.get(
            f"http://127.0.0.1:{port}/v1/search", params={"q": word, "size": 5}, timeout=30
        ).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {"mode": body.get("mode"), "version": body.get("model_version"), "notes": body.get("notes")}


def _model_state(port: int) -> dict[str, Any]:
    import httpx

    try:
        body = httpx.get(f"http://127.0.0.1:{port}/v1/recommendations?scenario=home&k=5", timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {"model": body.get("model_version"), "items": len(body.get("items", []))}


def _serve(
    env: dict[str, str], sample_items: list[str], words: list[str], follow: float = 0.0
) -> dict[str, Any]:
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "shelfwise.cli.main", "serve", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    started, peak = time.perf_counter(), 0
    out: dict[str, Any] = {}
    try:
        while True:
            peak = max(peak, _tree_rss(proc.pid))
            took = time.perf_counter() - started
            if proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else "")[-600:]
                return {"status": f"exited {proc.returncode}", "seconds": round(took, 1), "stderr": err}
            if took > START_TIMEOUT:
                return {
                    "status": "time box",
                    "seconds": round(took, 1),
                    "peak_rss": peak,
                    "cpu_seconds": round(_tree_cpu_seconds(proc.pid), 1),
                }
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        out = {
            "status": "ready",
            "seconds": round(took, 1),
            "load": _load(),
            "cpu_seconds": round(_tree_cpu_seconds(proc.pid), 1),
        }
        out["peak_rss_starting"] = peak
        out["rss_ready"] = _tree_rss(proc.pid)
        probes = [f"/v1/search?q={w}&k=10" for w in words[:3]]
        probes += [f"/v1/items/{i}/similar?k=10" for i in sample_items[:3]]
        probes += ["/v1/recommendations?scenario=home&k=10"]
        out["probes"] = [_probe(port, p) for p in probes]
        out["first_search"] = _search_state(port, words[0])
        out["first_model"] = _model_state(port)
        out["peak_rss"] = max(peak, _tree_rss(proc.pid))
        # then the background work: the chosen model's training and the hybrid index, up to a budget
        waited: dict[str, Any] = {}
        while time.perf_counter() - started < START_TIMEOUT + follow:
            peak = max(peak, _tree_rss(proc.pid))
            now = round(time.perf_counter() - started, 1)
            if "hybrid_seconds" not in waited and _search_state(port, words[0]).get("mode") == "hybrid":
                waited["hybrid_seconds"] = now
            model = _model_state(port)
            if "model_seconds" not in waited and model.get("model") not in (
                None,
                out["first_model"].get("model"),
            ):
                waited["model_seconds"], waited["model"] = now, model
            if len(waited) >= 3 or proc.poll() is not None:
                break
            time.sleep(2)
        out["background"] = {
            **waited,
            "followed_s": follow,
            "followed_until_s": START_TIMEOUT + follow,  # from launch
            "peak_rss": max(peak, _tree_rss(proc.pid)),
        }
        out["load_after"] = _load()
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _shop(name: str, items: int, users: int, events: int, how: str, follow: float) -> dict[str, Any]:
    row: dict[str, Any] = {"shop": name, "items": items, "users": users, "events": events, "catalogue": how}
    with tempfile.TemporaryDirectory(prefix="shelfwise-serve-scale-") as tmp:
        var = Path(tmp) / "var"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "SHELFWISE_VAR_DIR": str(var),
            "SHELFWISE_PROGRESS": "0",
            "SHELFWISE_RATE_LIMIT_PER_SECOND": "0",
            "SHELFWISE_DASHBOARD_ON_START": "false",
        }
        env.pop("SHELFWISE_DB_URL", None)
        var.mkdir()
        db = var / "shelfwise.db"
        shop = Path(tmp) / "shop.csv.gz"
        gen = ["generate", "--out", str(shop), "--events", str(events), "--items", str(items)]
        row["generate_seconds"], _ = _cli([*gen, "--users", str(users), "--seed", "19"], env, 300)
        catalogue = Path(tmp) / "shop.items.csv.gz"
        started = time.perf_counter()
        if how == "ingest":
            _cli(["ingest", "items", str(catalogue), "--format", "csv-items"], env, 600)
        else:
            code = (
                "import sys; from benchmarks.bench_serve_scale import bulk_items; bulk_items(*sys.argv[1:3])"
            )
            args = [sys.executable, "-c", code, str(db), str(catalogue)]
            subprocess.run(args, env=env, cwd=ROOT, check=True, timeout=600)
        row["catalogue_seconds"] = round(time.perf_counter() - started, 1)
        row["catalogue_load"] = _load()
        _log(f"{name}: catalogue in {row['catalogue_seconds']} s ({how})")
        row["events_seconds"], report = _cli(["ingest", "events", str(shop), "--format", "csv"], env, 600)
        row["events_accepted"] = report.get("accepted")
        _log(f"{name}: {row['events_accepted']:,} events in {row['events_seconds']} s")
        with gzip.open(catalogue, "rt", newline="") as fh:
            rows = [r for _, r in zip(range(2000), csv.DictReader(fh), strict=False)]
        popular = _popular(shop, 3)
        words = [rows[7]["title"].split()[-1], rows[11]["title"].split()[0], rows[99]["title"]]
        _log(f"{name}: serve")
        row["serve"] = _serve(env, popular, words, follow)
        models = var / "models" / "ACTIVE.json"
        if models.exists():
            row["model"] = json.loads(models.read_text()).get("model") or json.loads(models.read_text())
        _log(f"{name}: serve {row['serve'].get('status')} in {row['serve'].get('seconds')} s")
        if KEEP:  # the store, registry and generated files, for bench_sizing
            kept = Path(KEEP) / str(items)
            shutil.rmtree(kept, ignore_errors=True)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp), str(kept))
            Path(tmp).mkdir()  # TemporaryDirectory removes it on exit
            row["kept_in"] = str(kept)
    return row


def _size(word: str) -> int:
    """``37k`` / ``1M`` / ``1000000`` -> items."""
    w = word.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(w[-1:], 1)
    return int(float(w.rstrip("km")) * scale)


def _picked() -> list[int] | None:
    raw = os.environ.get("SHELFWISE_SERVE_SCALE_SHOPS", "").strip()
    return [_size(w) for w in raw.split(",") if w.strip()] if raw else None


def _near(items: int, wanted: list[int]) -> bool:
    return any(abs(items - w) <= 0.05 * w for w in wanted)  # "37k" picks the 37,355-item shop


def _previous_rows() -> dict[int, dict[str, Any]]:
    """The last written row of each shop, marked with when it was measured."""
    try:
        data = json.loads(RESULT.read_text())
    except (OSError, ValueError):
        return {}
    return {
        int(r["items"]): {**r, "kept_from": r.get("kept_from") or data.get("measured_at")}
        for r in data.get("rows", [])
        if isinstance(r, dict) and "items" in r
    }


def _popular(shop: Path, n: int) -> list[str]:
    """The shop's most viewed item ids in its first 100,000 events (they are in the trained model)."""
    counts: dict[str, int] = {}
    with gzip.open(shop, "rt", newline="") as fh:
        for _, r in zip(range(100_000), csv.DictReader(fh), strict=False):
            counts[r["item_id"]] = counts.get(r["item_id"], 0) + 1
    return sorted(counts, key=lambda k: -counts[k])[:n]


def _mb(n: int | None) -> str:
    return "" if not n else f"{n / 1e6:,.0f}"


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shop | items | events | catalogue s (how) | events s | serve | start s | CPU s to ready "
        "| peak RSS MB starting "
        "| RSS MB ready | answers (status × results, ms) | load | first search mode | first model "
        "| hybrid serving at s | trained model serving at s | peak RSS MB incl. background |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        s = r.get("serve", {})
        bg = s.get("background", {})
        missed = f"not within {bg.get('followed_until_s', bg.get('followed_s', 0)):.0f} s" if bg else ""
        answers = "; ".join(
            f"{p['path'].split('?')[0].replace('/v1/', '')} {p['status']}×{p.get('results', 0)} "
            f"{p.get('ms', '')}"
            for p in s.get("probes", [])
        )
        lines.append(
            f"| {r['shop']} | {r['items']:,} | {r['events']:,} | {r.get('catalogue_seconds', '')} "
            f"({r.get('catalogue', '')}) | {r.get('events_seconds', '')} | "
            f"{s.get('status', r.get('status', ''))} "
            f"| {s.get('seconds', '')} | {s.get('cpu_seconds', '')} "
            f"| {_mb(s.get('peak_rss_starting', s.get('peak_rss')))} "
            f"| {_mb(s.get('rss_ready'))} "
            f"| {answers} | {s.get('load', '')} | {s.get('first_search', {}).get('mode', '')} "
            f"| {s.get('first_model', {}).get('model', '')} "
            f"| {bg.get('hybrid_seconds', missed)} | {bg.get('model_seconds', missed)} "
            f"| {_mb(bg.get('peak_rss'))} |"
        )
    return "\n".join(lines)


def run() -> dict[str, Any]:
    rows = []
    started = time.perf_counter()
    picked, previous = _picked(), _previous_rows()
    for shop in SHOPS:
        if picked is not None and not _near(shop[1], picked):
            if shop[1] in previous:
                rows.append(previous[shop[1]])
            continue
        if time.perf_counter() - started > 3 * SHOP_BUDGET:
            rows.append({"shop": shop[0], "items": shop[1], "events": shop[3], "status": "time box"})
            continue
        try:
            rows.append(_shop(*shop))
        except (RuntimeError, subprocess.SubprocessError) as exc:
            rows.append(
                {"shop": shop[0], "items": shop[1], "events": shop[3], "status": f"failed: {exc}"[:300]}
            )
    kept = [f"{r['shop']}: not re-run, the row of {r['kept_from']}" for r in rows if r.get("kept_from")]
    table = _table(rows) + ("\n\n" + "; ".join(kept) + "." if kept else "")
    return {"name": "serve_scale", "rows": rows, "table": table, "load_at_end": list(os.getloadavg())}


if __name__ == "__main__":
    print(run()["table"])
