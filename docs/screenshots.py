"""README screenshots: the demo server over a small store, photographed by Chromium.

    python docs/screenshots.py            # writes docs/img/*.png (about three minutes)

It loads a tenth of Online Retail's customers (their whole year, so the forecast has history) into
a fresh SQLite store under a temporary folder, starts ``shelfwise serve`` on a free loopback port
(item-kNN, keyword search: quick to start), asks a few searches (so the query report has rows),
signs in with the admin key ``serve`` wrote, and takes screenshots with Debian's Chromium (through
Playwright; never ``playwright install``) of the home page, a search, a product page, the merchant
page, the query report, the analytics dashboard and the forecast page. The server it started is
stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_USERS = ["12431", "12471", "12621"]


def small_store_file(out: Path) -> Path:
    """Online Retail's lines of the customers whose id ends in 1, and the first week's guest lines."""
    with (
        gzip.open(ONLINE_RETAIL, "rt", encoding="utf-8", newline="") as src,
        out.open("w", newline="") as dst,
    ):
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for row in reader:
            customer = row[6].removesuffix(".0")
            if customer.endswith("1") or (not customer and row[4] < "2010-12-08"):
                writer.writerow(row)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"shelfwise serve exited {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise SystemExit("shelfwise serve did not get ready in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shelfwise-screens-"))
    db = f"sqlite:///{work / 'store.db'}"
    env = {
        **os.environ,
        "SHELFWISE_VAR_DIR": str(work / "var"),
        "SHELFWISE_SEARCH_MODE": "bm25",
        "SHELFWISE_DEMO_USERS": json.dumps(DEMO_USERS),
        "SHELFWISE_DASHBOARD_ON_START": "1",
    }
    env.pop("SHELFWISE_API_KEY_HASHES", None)
    cli = [sys.executable, "-m", "shelfwise.cli.main"]
    print("loading a small store …", file=sys.stderr)
    subprocess.run(
        [
            *cli,
            "ingest",
            "events",
            str(small_store_file(work / "retail.csv")),
            "--format",
            "online-retail",
            "--db",
            db,
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--db", db, "--model", "itemknn"],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_ready(base, server)
        key = (work / "var" / "api.key").read_text().strip()
        for q in ("lantern", "lantern", "heart", "wibblefrob", "tea cosy xl", "wibblefrob"):
            urllib.request.urlopen(f"{base}/v1/search?q={urllib.request.quote(q)}", timeout=60).read()
        shoot(base, key, args.out)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def shoot(base: str, key: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(120_000)

            def snap(name: str) -> None:
                page.screenshot(path=str(out / f"{name}.png"))
                print(f"  {out / name}.png", file=sys.stderr)

            page.goto(f"{base}/?user={DEMO_USERS[0]}")
            page.wait_for_selector("#recs .item")
            snap("home")
            page.goto(f"{base}/search?q=lantern")
            page.wait_for_selector("#results .item")
            snap("search")
            page.locator("#results .item a").first.click()
            page.wait_for_selector("#similar .item")
            snap("product")
            page.goto(f"{base}/sign-in?next=/merchant")
            page.fill("#key", key)
            page.click("#sign-in")
            page.wait_for_selector("#placements tr[data-placement]")
            snap("merchant")
            page.goto(f"{base}/merchant/queries?min_searches=1")
            page.wait_for_selector("#zero-result")
            snap("queries")
            page.goto(f"{base}/analytics/")
            page.wait_for_selector("#headline-revenue", timeout=300_000)
            snap("dashboard")
            page.goto(f"{base}/analytics/forecast")
            page.wait_for_selector("#forecast-item img.chart", timeout=600_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('img.chart')]"
                ".every((i) => i.complete && i.naturalWidth > 0)"
            )
            page.locator("#forecast-item").scroll_into_view_if_needed()
            snap("forecast")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
