"""`shelfwise experiment simulate` as a user runs it: a real process, the vendored Online Retail file
(a bounded slice), one JSON object on stdout with the keys issue 17 names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ONLINE_RETAIL, TEST_KEY


def _shelfwise(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHELFWISE_PSEUDONYM_KEY": TEST_KEY}
    if cwd is not None:
        env["SHELFWISE_VAR_DIR"] = str(cwd / "var")
    env.pop("SHELFWISE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "shelfwise.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return _shelfwise("experiment", "simulate", *args, cwd=cwd)


def test_srm_flags_the_injected_split_and_not_the_fair_one() -> None:
    proc = _run("--scenario", "srm", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["injected"]["srm_flagged"] is True
    assert out["fair"]["srm_flagged"] is False
    assert sum(out["injected"]["counts"]) == 20_000


def test_ope_prints_relative_errors_against_the_truth() -> None:
    proc = _run("--scenario", "ope", "--limit", "20000", "--logs", "8000", "--seed", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("ips_error", "snips_error", "dr_error"):
        assert 0 <= out[key] < 1
    truth = out["true_value"]
    assert out["dr_error"] == pytest.approx(abs(out["estimates"]["dr"] - truth) / truth)
    assert out["simulator"]["source"] == "online-retail"


def test_interleaving_vs_ab_prints_users_and_their_ratio() -> None:
    sizes = ("--limit", "20000", "--users", "800", "--check-runs", "0")
    proc = _run("--scenario", "interleaving-vs-ab", *sizes, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ab_users"] > 0 and out["interleaving_users"] > 0
    assert out["ratio"] == pytest.approx(out["ab_users"] / out["interleaving_users"])
    assert out["ranker_correlation"] == 0.0 and -1 <= out["rank_agreement"] <= 1
    alike = json.loads(
        _run("--scenario", "interleaving-vs-ab", *sizes, "--ranker-correlation", "0.6", "--json").stdout
    )
    assert alike["ranker_correlation"] == 0.6 and alike["rank_agreement"] > out["rank_agreement"]
    bad = _run("--scenario", "interleaving-vs-ab", "--ranker-correlation", "1.5")
    assert bad.returncode == 2 and "--ranker-correlation" in bad.stderr and "Traceback" not in bad.stderr


def test_interleaving_vs_ab_names_its_ab_analysis_and_takes_the_dependent_click_model() -> None:
    sizes = ("--limit", "20000", "--users", "800", "--check-runs", "0")
    proc = _run(
        "--scenario", "interleaving-vs-ab", *sizes, "--click-model", "dependent", "--continuation", "0.3"
    )
    assert proc.returncode == 0, proc.stderr
    assert "A/B analysis: clicks per visit" in proc.stdout and "clicks per user instead" in proc.stdout
    as_json = _run(
        "--scenario",
        "interleaving-vs-ab",
        *sizes,
        "--click-model",
        "dependent",
        "--continuation",
        "0.3",
        "--json",
    )
    assert json.loads(as_json.stdout)["click_continuation"] == pytest.approx(0.3)
    bad = _run("--scenario", "ope", "--format", "nosuch")
    assert bad.returncode != 0 and "unknown format 'nosuch'" in bad.stderr and "Traceback" not in bad.stderr
    model = _run("--scenario", "ope", "--click-model", "chain")
    assert model.returncode == 2 and "position, cascade or dependent" in model.stderr


def test_fits_on_a_store_given_by_db(tmp_path: Path, retail_slice: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    ingest = _shelfwise(
        "ingest", "events", str(retail_slice), "--format", "online-retail", "--db", db, cwd=tmp_path
    )
    assert ingest.returncode == 0, ingest.stderr
    proc = _run("--scenario", "ope", "--db", db, "--logs", "2000", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["simulator"]["buyers"] > 10


def test_user_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    bad = _run("--scenario", "bogus")
    assert bad.returncode == 2 and "--scenario must be one of" in bad.stderr
    assert "Traceback" not in bad.stderr
    method = _run("--scenario", "interleaving-vs-ab", "--interleaving", "balanced")
    assert method.returncode == 2 and "--interleaving must be team-draft or optimized" in method.stderr
    assert "Traceback" not in method.stderr
    empty = _run("--scenario", "ope", "--db", f"sqlite:///{tmp_path / 'empty.db'}", cwd=tmp_path)
    assert empty.returncode != 0 and "no user-item events" in empty.stderr
    assert "Traceback" not in empty.stderr
    missing = _run("--scenario", "ope", "--data", str(tmp_path / "nope.csv.gz"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert ONLINE_RETAIL.is_file()


def _store_with_served_lists(url: str, truth: str, lists: int = 3_000) -> None:
    """A store whose served lists got clicks from a known click model, cited by rec_id and position
    and attributed the way live traffic is."""
    import numpy as np

    from shelfwise.core.ids import answer_id
    from shelfwise.data.schemas import Event, EventType
    from shelfwise.evaluation.attribution import attribute_events
    from shelfwise.evaluation.click_models import generate_log
    from shelfwise.store import open_store
    from shelfwise.store.impressions import Impression, log_impressions

    alpha = np.random.default_rng(1).beta(1, 5, 80)
    log = generate_log(truth, sessions=lists, alpha=alpha, lam=0.6, seed=7)
    t0 = 1_700_000_000_000
    imps, events = [], []
    for n in range(lists):
        items = [f"i{j}" for j in log.items[n]]
        imp = Impression(answer_id(t0 + n), "rec", "home", items, t0 + n, user_id=f"u{n % 500}")
        imps.append(imp)
        for pos in np.flatnonzero(log.clicks[n]):
            events.append(
                Event(
                    event_id=f"c{n}-{pos}",
                    type=EventType.CLICK,
                    ts=imp.ts + 5 + int(pos),
                    user_id=imp.user_id,
                    item_id=items[pos],
                    context={"rec_id": imp.answer_id, "position": int(pos) + 1},
                )
            )
    with open_store(url) as store:
        log_impressions(store, imps)
        store.append_events(events)
        attribute_events(store, events)


@pytest.mark.parametrize("truth", ["cascade", "position"])
def test_click_model_is_fitted_on_served_lists_and_the_json_says_why(
    tmp_path: Path, retail_slice: Path, truth: str
) -> None:
    clicks = f"sqlite:///{tmp_path / 'clicks.db'}"
    _store_with_served_lists(clicks, truth)
    sizes = ("--data", str(retail_slice), "--limit", "3000", "--logs", "2000")
    proc = _run("--scenario", "ope", *sizes, "--clicks-from", clicks, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["click_model"] == truth and out["click_model_source"] == "fitted"
    fit = out["click_model_fit"]
    assert fit["best"] == truth and fit["test_sessions"] == 900
    assert "held-out log-likelihood" in out["click_model_reason"]
    # without served lists the model is assumed, and the output says so
    plain = json.loads(_run("--scenario", "ope", *sizes, "--json", cwd=tmp_path).stdout)
    assert plain["click_model"] == "position" and plain["click_model_source"] == "assumed"
    both = _run("--scenario", "ope", *sizes, "--clicks-from", clicks, "--click-model", "cascade")
    assert both.returncode == 2 and "not both" in both.stderr
    empty = _run("--scenario", "ope", *sizes, "--clicks-from", f"sqlite:///{tmp_path / 'none.db'}")
    assert empty.returncode != 0 and "too few to fit a click model" in empty.stderr
    assert "Traceback" not in empty.stderr
