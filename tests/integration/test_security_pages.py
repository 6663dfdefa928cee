"""Issue 13, findings 2 and 3 (and the page parts of 13), through the real service: the app
``shelfwise serve`` runs (``create_app``) over a SQLite store from a slice of Online Retail with a
trained model, and a real PostgreSQL store for the store-URL leaks. Each test fails on the code
before the fix: open analytics pages, the raw store URL in the report API and the child's argv, a
rebuild any site could trigger, no CSP, data put into ``innerHTML``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.core.access import KeyRing, Role
from shelfwise.web.access import COOKIE, PageAccess
from shelfwise.web.dashboard import AnalyticsDashboard
from shelfwise.web.pages import mount_pages
from tests.integration.api_fixtures import API_KEY, Served

STATIC = Path(__file__).resolve().parents[2] / "src" / "shelfwise" / "web" / "static"
TEMPLATES = STATIC.with_name("templates")


class Site:
    def __init__(self, client: TestClient, served: Served) -> None:
        self.client, self.served = client, served
        self.ring = KeyRing(served.root / "var" / "keys.json")
        self.analyst, self.analyst_record = self.ring.create(Role.ANALYST, "dashboards")
        self.reader, _ = self.ring.create(Role.READ, "storefront")
        self.admin = API_KEY  # the configured admin key (what `serve` puts in var/api.key)

    def sign_in(self, key: str, next: str = "/analytics/") -> Any:
        page = self.client.get(f"/sign-in?next={next}")
        assert page.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, "the sign-in form carries a form token"
        return self.client.post(
            "/sign-in",
            data={"key": key, "csrf_token": token.group(1), "next": next},
            follow_redirects=False,
        )

    def csrf(self, path: str = "/analytics/") -> str:
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', self.client.get(path).text)
        assert found, f"{path} carries the session's CSRF token"
        return found.group(1)


@pytest.fixture
def site(served: Served) -> Iterator[Site]:
    settings = served.settings(rate_limit_per_second=0, dashboard_on_start=False)
    app = create_app(settings, served.url, watch_interval=None)
    with TestClient(app) as client:
        yield Site(client, served)


ANALYST_PATHS = (
    "/analytics/api/funnel?by=brand",
    "/analytics/api/report",
    "/analytics/chart/funnel.svg",
    "/analytics/marketing_lists.csv",
)


def test_finding_2_analytics_pages_need_an_analyst_credential(site: Site) -> None:
    c = site.client
    # no credential: a person is sent to the sign-in page, a script gets 401
    for page in ("/analytics/", "/analytics"):
        answer = c.get(page, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next=")
    for path in ANALYST_PATHS:
        answer = c.get(path)
        assert answer.status_code == 401, path
        assert answer.json()["error"] == "credential_required"
    assert c.post("/analytics/api/rebuild").status_code == 401
    # a key that is not accepted, and a key of a role that does not cover analytics
    assert c.get("/analytics/api/report", headers={"X-API-Key": "guessed"}).status_code == 401
    for path in ANALYST_PATHS:
        assert c.get(path, headers={"X-API-Key": site.reader}).status_code == 403, path
    assert c.get("/analytics/", headers={"X-API-Key": site.reader}).status_code == 403
    # an analyst key and the admin key (admin implies every role) open them
    for key in (site.analyst, site.admin):
        assert c.get("/analytics/api/funnel?by=total", headers={"X-API-Key": key}).status_code == 200
        assert c.get("/analytics/", headers={"X-API-Key": key}).status_code == 200
    # a revoked key stops working at once
    site.ring.revoke(site.analyst_record.id)
    assert c.get("/analytics/api/report", headers={"X-API-Key": site.analyst}).status_code == 401


def test_finding_2_operations_need_an_admin_credential_and_keep_no_key_in_the_browser(site: Site) -> None:
    c = site.client
    answer = c.get("/ops", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in?next=%2Fops"
    assert c.get("/ops/api/models").status_code == 401
    assert c.post("/ops/api/rollback").status_code == 401
    assert c.get("/ops", headers={"X-API-Key": site.analyst}).status_code == 403
    assert c.get("/ops/api/models", headers={"X-API-Key": site.analyst}).status_code == 403
    models = c.get("/ops/api/models", headers={"X-API-Key": site.admin})
    assert models.status_code == 200 and models.json()["active"]
    page = c.get("/ops", headers={"X-API-Key": site.admin}).text
    assert "api-key" not in page and "sessionStorage" not in page
    for script in STATIC.glob("*.js"):
        assert "sessionStorage" not in script.read_text(), f"{script.name} keeps something in sessionStorage"


def test_finding_2_sign_in_sets_a_session_cookie_that_holds_no_key(site: Site) -> None:
    c = site.client
    wrong = site.sign_in("not-a-key")
    assert wrong.status_code == 401 and "not accepted" in wrong.text
    answer = site.sign_in(site.analyst)
    assert answer.status_code == 303 and answer.headers["location"] == "/analytics/"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(COOKIE + "="))
    flags = {f.strip().split("=")[0].lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= flags and "samesite=strict" in cookie.lower()
    assert "path=/;" in cookie.lower() + ";"
    value = cookie.split(";")[0].split("=", 1)[1]
    assert site.analyst not in value and site.analyst.split("_")[-1] not in value
    assert c.get("/analytics/").status_code == 200
    assert c.get("/analytics/api/funnel?by=total").status_code == 200
    # an analyst session does not open the operations page
    assert c.get("/ops", follow_redirects=False).status_code == 403
    # signing out ends the session, even for someone who kept a copy of the cookie
    token = site.csrf()
    assert c.post("/sign-out", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    c.cookies.set(COOKIE, value)
    assert c.get("/analytics/", follow_redirects=False).status_code == 303
    # revoking the key that signed in ends its sessions too
    c.cookies.clear()
    site.sign_in(site.analyst)
    assert c.get("/analytics/").status_code == 200
    site.ring.revoke(site.analyst_record.id)
    assert c.get("/analytics/", follow_redirects=False).status_code == 303
    # a forged cookie (role changed, signature kept) is refused
    forged = value.replace(".analyst.", ".admin.")
    c.cookies.clear()
    c.cookies.set(COOKIE, forged)
    assert c.get("/ops", follow_redirects=False).status_code == 303


def test_finding_2_sign_in_refuses_a_form_posted_from_another_site(site: Site) -> None:
    # another site's page can post the form, but cannot read or set the form token cookie
    answer = site.client.post("/sign-in", data={"key": site.admin, "next": "/ops"}, follow_redirects=False)
    assert answer.status_code == 403
    assert COOKIE not in answer.headers.get("set-cookie", "")
    # nor send a signed-in visitor off-site afterwards
    answer = site.sign_in(site.admin, next="//evil.example/x")
    assert answer.status_code == 303 and answer.headers["location"] == "/analytics/"


def test_finding_2_rebuild_refuses_a_cross_site_post(site: Site) -> None:
    c = site.client
    site.sign_in(site.analyst)
    dashboard_state = c.get("/analytics/api/report").json()["status"]
    # the session cookie alone (what a cross-site form or fetch would carry) is not enough
    assert c.post("/analytics/api/rebuild").status_code == 403
    assert c.post("/analytics/api/rebuild", headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert c.post("/analytics/api/rebuild", data={"csrf_token": ""}).status_code == 403
    # the right token from another origin is refused too
    token = site.csrf()
    evil = {"X-CSRF-Token": token, "Origin": "https://evil.example"}
    assert c.post("/analytics/api/rebuild", headers=evil).status_code == 403
    assert c.post("/ops/api/rollback", headers={"X-CSRF-Token": token}).status_code == 403  # analyst
    assert c.get("/analytics/api/report").json()["status"] == dashboard_state == "not built"
    # the operations page's POSTs need the token as well
    c.cookies.clear()
    site.sign_in(site.admin, next="/ops")
    active = c.get("/ops/api/models").json()["active"]
    assert c.post("/ops/api/rollback").status_code == 403
    assert c.get("/ops/api/models").json()["active"] == active


def _children_cmdlines(parent: int) -> list[str]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                out.append(stat.with_name("cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_finding_2_report_never_shows_the_store_url(tmp_path: Path, fresh_pg_url: str) -> None:
    password = "s3cret-pw-4711"
    # PostgreSQL here trusts local connections, so the password is not checked: it is only bait
    url = sa.make_url(fresh_pg_url).set(username="shelfwise", password=password).render_as_string(False)
    with sa.create_engine(sa.make_url(fresh_pg_url).set(drivername="postgresql+psycopg")).begin() as conn:
        conn.exec_driver_sql(
            "DO $$BEGIN CREATE ROLE shelfwise LOGIN; EXCEPTION WHEN duplicate_object THEN END$$"
        )
    var = tmp_path / "var"
    ring = KeyRing(var / "keys.json")
    analyst, _ = ring.create(Role.ANALYST)
    app = FastAPI()
    dashboard = mount_pages(
        app,
        store_url=url,
        var_dir=var,
        access=PageAccess.from_ring(ring, var),
        build_report=False,
    )
    # the report's folder is not named by a hash of the password (an offline guessing oracle)
    assert dashboard.root.name not in {
        hashlib.sha256(url.encode()).hexdigest()[:16],
        hashlib.sha256(password.encode()).hexdigest()[:16],
    }
    assert dashboard.root == AnalyticsDashboard(url.replace(password, "other"), var).root
    # a report built before the fix kept the raw URL in its summary
    dashboard.root.mkdir(parents=True)
    (dashboard.root / "report.json").write_text(json.dumps({"source": url, "seconds": 1.0}))
    (dashboard.root / "sections.html").write_text("<section><h2>Overview</h2></section>")
    dashboard.state = {"status": "ready", "built_at": time.time()}

    # the report's child process: the URL never on its command line (every user sees argv)
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.extend(_children_cmdlines(os.getpid()))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(RuntimeError) as failed:  # an empty store: the child fails, and says why
            dashboard._child("analytics", "funnel", "--by", "total", "--json")
    finally:
        done.set()
        watcher.join()
    children = [s for s in seen if "shelfwise.cli.main" in s]
    assert children, "the child process was seen"
    assert not [s for s in children if password in s or url in s]
    # the child did get the store (it failed on the empty store, not on a missing URL), and its
    # error, which a page or a log may show, does not quote the password
    assert "sqlite" not in str(failed.value) and password not in str(failed.value)

    # a failed build shows its error without the password
    error = dashboard.scrub(f"OperationalError: connection to {url} failed")
    dashboard.state = {"status": "failed", "error": error}
    with TestClient(app) as c:
        headers = {"X-API-Key": analyst}
        report = c.get("/analytics/api/report", headers=headers)
        assert report.status_code == 200
        assert password not in report.text and url not in report.text
        page = c.get("/analytics/", headers=headers).text
        assert password not in page and "***" in page
        dashboard.state = {"status": "ready", "built_at": time.time()}
        report = c.get("/analytics/api/report", headers=headers)
        assert report.json()["summary"]["seconds"] == 1.0
        assert password not in report.text and "source" not in report.json()["summary"]
        assert password not in c.get("/analytics/", headers=headers).text
        # the live explorer over this empty store: a 503 saying why, never the password, never a 500
        funnel = c.get("/analytics/api/funnel?by=total", headers=headers)
        assert funnel.status_code == 503 and "events" in funnel.text  # nothing ingested yet
        assert password not in funnel.text and funnel.headers["retry-after"]
        assert report.headers["cache-control"] == "no-store"
    dashboard.close()


def test_finding_3_every_page_sends_a_csp_and_has_no_inline_script(site: Site) -> None:
    c = site.client
    admin = {"X-API-Key": site.admin}
    pages = ["/", "/search?q=heart", "/p/85123A", "/cart", "/sign-in", "/analytics/", "/ops"]
    for path in pages:
        answer = c.get(path, headers=admin)
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        html = answer.text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"{path}: an inline script"
        assert not re.search(r"\son[a-z]+\s*=", html), f"{path}: an inline event handler"
        assert not re.search(r"\sstyle\s*=", html), f"{path}: an inline style (blocked by the CSP)"
    # the JSON API and the static files carry the headers too, with a policy that allows nothing
    # (a JSON answer opened as a document runs no script and cannot be framed)
    for path in ("/v1/search?q=heart", "/static/shop.js", "/healthz"):
        answer = c.get(path)
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert "default-src 'none'" in answer.headers["content-security-policy"], path


def test_finding_3_no_script_parses_data_as_html() -> None:
    """The pages build what they show with text nodes: no script may hand a string to the HTML
    parser (the browser test below shows the effect; this names the place)."""
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
            assert sink not in text, f"{script.name} uses {sink}"
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert "| safe" not in text or template.name == "analytics.html", template.name
        assert "autoescape false" not in text, template.name


def test_finding_2_a_sign_out_holds_in_every_replica(tmp_path: Path) -> None:
    """Replicas sharing ``var/`` (the drill's, behind HAProxy) accept each other's sessions, and a
    session signed out in one is refused by all, not only by the process that took the sign-out."""
    var = tmp_path / "var"
    ring = KeyRing(var / "keys.json")
    key, _ = ring.create(Role.ANALYST)
    one, two = PageAccess.from_ring(ring, var), PageAccess.from_ring(KeyRing(var / "keys.json"), var)
    issued = one.sign_in(key)
    assert issued is not None
    cookie, session = issued
    assert key not in cookie
    assert two.session(cookie) == session  # the other replica accepts it (shared session.key)
    one.sign_out(session)
    assert one.session(cookie) is None and two.session(cookie) is None
    assert (var / "sessions-signed-out.json").stat().st_mode & 0o077 == 0
    # another session of the same key is untouched, and an expired one is refused
    again = two.sign_in(key)
    assert again is not None and one.session(again[0]) is not None
    assert one.session(again[0], now=again[1].expires + 1) is None
