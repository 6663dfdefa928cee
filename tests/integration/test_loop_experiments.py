"""Online experiments over the impression log, on SQLite and PostgreSQL: overlap refusal,
assignment, status (SRM, lifts, always-valid p, CUPED, guardrails), stop, the release gate, and
the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from shelfwise.core.ids import answer_id
from shelfwise.data.schemas import Event, EventType
from shelfwise.evaluation.attribution import attribute_events
from shelfwise.evaluation.experiment_service import (
    Arm,
    ExperimentError,
    ExperimentService,
    ExperimentSpec,
    Guardrail,
    traffic_position,
)
from shelfwise.registry.gate import experiment_gate
from shelfwise.registry.versions import GateRefusedError
from shelfwise.store import Store
from shelfwise.store.impressions import Impression, log_impressions

T0 = 1_700_000_000_000
DAY = 86_400_000
ITEMS = ["85123A", "71053", "84406B", "84029G", "84029E"]


def spec(name: str = "ranker-v2", **kw: object) -> ExperimentSpec:
    fields: dict[str, object] = {
        "name": name,
        "placement": "home",
        "arms": [Arm(name="control", share=0.5, version="v1"), Arm(name="v2", share=0.5, version="v2")],
        "salt": "s1",
        "start_ts": T0,
        "primary_metric": "ctr",
        "guardrails": [Guardrail(metric="conversion", max_drop=0.05)],
    }
    fields.update(kw)
    return ExperimentSpec(**fields)  # type: ignore[arg-type]


def serve(
    store: Store,
    svc: ExperimentService,
    *,
    users: int,
    ctr: dict[str, float],
    seed: int = 0,
    pre_period: bool = True,
) -> None:
    """Serve each user three answers through ``assignment``; clicks at the arm's rate (heavier
    clickers before the start click more during it, so CUPED has something to use)."""
    rng = np.random.default_rng(seed)
    imps, events = [], []
    for u in range(users):
        user = f"user-{u}"
        a = svc.assignment("home", user, now=T0 + 1)
        assert a is not None
        taste = rng.gamma(2.0, 0.5)
        if pre_period:
            for k in range(rng.poisson(3 * taste)):
                events.append(
                    Event(
                        event_id=f"pre-{u}-{k}",
                        type=EventType.CLICK,
                        ts=T0 - DAY - k,
                        user_id=user,
                        item_id=ITEMS[k % 5],
                    )
                )
        for visit in range(3):
            i = Impression(
                answer_id(T0 + u),
                "rec",
                "home",
                ITEMS,
                T0 + u * 100 + visit,
                user_id=user,
                session_id=f"{user}-{visit}",
                version=a.version,
                experiment=a.experiment,
                arm=a.arm,
            )
            imps.append(i)
            if rng.random() < min(ctr[a.arm] * taste, 1.0):
                events.append(
                    Event(
                        event_id=f"c-{u}-{visit}",
                        type=EventType.CLICK,
                        ts=i.ts + 10,
                        user_id=user,
                        session_id=f"{user}-{visit}",
                        item_id=ITEMS[1],
                        context={"rec_id": i.answer_id, "position": 2},
                    )
                )
    log_impressions(store, imps)
    store.append_events(events)
    attribute_events(store, events)


def test_overlapping_traffic_on_a_placement_is_refused_with_a_clear_message(store: Store) -> None:
    svc = ExperimentService(store)
    svc.create(spec(traffic_from=0.0, traffic_to=0.5))
    with pytest.raises(ExperimentError) as err:
        svc.create(spec("other", traffic_from=0.4, traffic_to=1.0))
    assert "ranker-v2" in str(err.value) and "'home'" in str(err.value) and "[0.4, 1)" in str(err.value)
    svc.create(spec("disjoint", traffic_from=0.5, traffic_to=1.0))  # the other half is free
    svc.create(spec("elsewhere", placement="search"))  # another placement
    with pytest.raises(ExperimentError, match="exists already"):
        svc.create(spec("disjoint", traffic_from=0.5, traffic_to=1.0))
    svc.stop("ranker-v2")
    svc.create(spec("after", traffic_from=0.0, traffic_to=0.5))  # its traffic is free again
    # assignment respects the slices: a shopper lands in the experiment that owns their position
    for u in range(200):
        a = svc.assignment("home", f"user-{u}", now=T0 + 1)
        assert a is not None
        assert a.experiment == ("after" if traffic_position(f"user-{u}", "home") < 0.5 else "disjoint")
    assert svc.assignment("home", None) is None
    with pytest.raises(ExperimentError, match="already stopped"):
        svc.stop("ranker-v2")


def test_status_reads_srm_lifts_sequential_p_cuped_and_guardrails(store: Store) -> None:
    svc = ExperimentService(store)
    svc.create(spec(tau_relative=0.4))  # the mixture's spread near the effect expected
    serve(store, svc, users=1_500, ctr={"control": 0.10, "v2": 0.16})
    out = svc.status("ranker-v2")
    assert out["trustworthy"] and not out["srm"]["flagged"]
    assert sum(out["srm"]["counts"].values()) == 1_500
    (c,) = out["comparisons"]
    lift = c["lifts"]["ctr"]
    assert lift["low"] > 0 and 0.3 < lift["lift"] < 0.9  # the true lift is 60%
    assert c["sequential"]["reject"] and c["sequential"]["p"] < 0.05
    assert c["cuped"]["applied"] and c["cuped"]["variance_reduction"] > 0.05
    assert c["cuped"]["diff_se"] < c["cuped"]["diff_se_unadjusted"]
    assert c["guardrails"][0]["metric"] == "conversion"
    # the always-valid p-value is kept: it never rises between reads
    assert svc.get("ranker-v2").state["msprt_min_p"]["v2"] == pytest.approx(c["sequential"]["p"])
    gate = experiment_gate(out, require="win")
    assert gate.passed, gate.reasons
    svc.stop("ranker-v2", reason="shipped")
    assert svc.get("ranker-v2").status == "stopped" and svc.assignment("home", "user-1", now=T0 + 2) is None


def test_the_gate_refuses_an_arm_without_a_credible_win(store: Store) -> None:
    svc = ExperimentService(store)
    svc.create(spec())
    serve(store, svc, users=1_000, ctr={"control": 0.1, "v2": 0.1}, pre_period=False)
    out = svc.status("ranker-v2")
    assert out["srm"]["counts"]["v2"] > 0
    c = out["comparisons"][0]
    assert c["cuped"]["applied"] is False
    gate = experiment_gate(out, require="win")
    assert not gate.passed
    with pytest.raises(GateRefusedError, match="not yet credibly better"):
        gate.raise_if_refused("v2")


def test_srm_flags_a_split_that_lost_shoppers(store: Store) -> None:
    svc = ExperimentService(store)
    svc.create(spec())
    rows = []
    for u in range(4_000):
        a = svc.assignment("home", f"user-{u}", now=T0 + 1)
        assert a is not None
        if a.arm == "v2" and u % 5 == 0:
            continue  # a fifth of v2's shoppers never logged (e.g. a client crashing on v2)
        rows.append(
            Impression(
                answer_id(T0),
                "rec",
                "home",
                ITEMS,
                T0 + u,
                user_id=f"user-{u}",
                experiment=a.experiment,
                arm=a.arm,
                version=a.version,
            )
        )
    log_impressions(store, rows)
    out = svc.status("ranker-v2")
    assert out["srm"]["flagged"] and not out["trustworthy"]


def test_cli_create_status_list_stop_and_overlap(store_url: str) -> None:
    from shelfwise.cli.main import app

    runner = CliRunner()
    args = [
        "experiment",
        "create",
        "--db",
        store_url,
        "--name",
        "e1",
        "--placement",
        "home",
        "--arm",
        "control:0.5:v1",
        "--arm",
        "v2:0.5:v2",
        "--guardrail",
        "conversion:0.02",
        "--json",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["spec"]["arms"][1]["version"] == "v2"
    r = runner.invoke(app, [*args[:5], "e2", *args[6:]])
    assert r.exit_code == 2
    assert (
        "share traffic with running experiment 'e1'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    )
    r = runner.invoke(
        app,
        [
            "experiment",
            "create",
            "--db",
            store_url,
            "--name",
            "e3",
            "--placement",
            "x",
            "--arm",
            "a:0.7",
            "--arm",
            "b:0.7",
        ],
    )
    assert r.exit_code == 2 and "add up to 1" in r.stderr
    r = runner.invoke(app, ["experiment", "status", "e1", "--db", store_url, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["srm"]["n"] == 0 and out["comparisons"][0]["note"].startswith("not enough")
    r = runner.invoke(app, ["experiment", "list", "--db", store_url, "--json"])
    assert [e["name"] for e in json.loads(r.stdout)["experiments"]] == ["e1"]
    r = runner.invoke(app, ["experiment", "stop", "e1", "--db", store_url, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "stopped"
    r = runner.invoke(app, ["experiment", "status", "nope", "--db", store_url])
    assert r.exit_code == 2 and "no experiment named 'nope'" in r.stderr


def test_an_interleaving_experiment_credits_clicks_to_the_arm_whose_pick_they_were(store: Store) -> None:
    """Shoppers who click the items B ranks first: the status prefers B on both credits, the gate
    passes B and refuses A; the spec refuses what interleaving cannot compare."""
    from shelfwise.evaluation.experiments import interleave

    svc = ExperimentService(store)
    with pytest.raises(ValueError, match="two arms"):
        spec("three", kind="interleaving", arms=[Arm(name=n, share=1 / 3, version=n) for n in "abc"])
    with pytest.raises(ValueError, match="not model versions"):
        spec("on-search", kind="interleaving", placement="search")
    with pytest.raises(ValueError, match="differ in index version or search mode"):
        spec(
            "same-search",
            kind="interleaving",
            placement="search",
            arms=[Arm(name="a", share=0.5, search_mode="bm25"), Arm(name="b", share=0.5, search_mode="bm25")],
        )
    with pytest.raises(ValueError, match="are for the search placement"):
        spec(
            "index-on-home",
            kind="interleaving",
            arms=[Arm(name="a", share=0.5), Arm(name="b", share=0.5, index_version="i2")],
        )
    searching = spec(
        "search-modes",
        kind="interleaving",
        placement="search",
        arms=[
            Arm(name="hybrid", share=0.5),
            Arm(name="keyword", share=0.5, index_version="i2", search_mode="bm25"),
        ],
    )
    assert searching.arms[1].search_mode == "bm25"
    with pytest.raises(ValueError, match="different model versions"):
        spec("same", kind="interleaving", arms=[Arm(name="a", share=0.5), Arm(name="b", share=0.5)])
    svc.create(
        spec(
            "inter",
            kind="interleaving",
            arms=[Arm(name="old", share=0.5, version="v1"), Arm(name="new", share=0.5, version="v2")],
        )
    )
    a = svc.assignment("home", "user-1", now=T0 + 1)
    assert a is not None and (a.kind, a.arm, a.version, a.partner) == (
        "interleaving",
        "interleaved",
        "v1",
        "v2",
    )
    items = [f"i{n}" for n in range(12)]
    good = items[6:] + items[:6]  # B's order: what shoppers like first
    rng = np.random.default_rng(3)
    imps, events = [], []
    for u in range(150):
        for visit in range(2):
            mixed = interleave(items, good, 6, rng)
            i = Impression(
                answer_id(T0 + 1000 * u + visit),
                "rec",
                "home",
                mixed.items,
                T0 + 1000 * u + visit,
                user_id=f"user-{u}",
                version="v1",
                experiment="inter",
                arm="interleaved",
                interleaving=mixed.to_dict(),
            )
            imps.append(i)
            for pos, item in enumerate(mixed.items, 1):
                liked = good.index(item) < 3
                if rng.random() < (0.6 if liked else 0.05) / np.log2(pos + 1):
                    events.append(
                        Event(
                            event_id=f"c-{u}-{visit}-{pos}",
                            type=EventType.CLICK,
                            ts=i.ts + 5,
                            user_id=f"user-{u}",
                            item_id=item,
                            context={"rec_id": i.answer_id, "position": pos},
                        )
                    )
    log_impressions(store, imps)
    store.append_events(events)
    attribute_events(store, events)
    out = svc.status("inter")
    assert out["kind"] == "interleaving" and out["units"] == 150 and out["impressions"] == 300
    assert out["clicks"] == len(events)
    for credit in out["credit"].values():
        assert credit["mean"] < 0 and credit["high"] < 0 and credit["sequential_reject"]
    assert out["preferred"] == "new"
    assert out["impression_wins"]["new"] > 3 * out["impression_wins"]["old"]
    assert experiment_gate(out).passed and experiment_gate(out).arm == "new"
    refused = experiment_gate(out, arm="old")
    assert not refused.passed and any("prefers the other arm" in r for r in refused.reasons)
    with pytest.raises(GateRefusedError):
        refused.raise_if_refused("v1")


def test_cli_creates_and_reads_an_interleaving_experiment(store_url: str) -> None:
    from shelfwise.cli.main import app

    runner = CliRunner()
    base = ["experiment", "create", "--db", store_url, "--placement", "home", "--kind", "interleaving"]
    r = runner.invoke(
        app, [*base, "--name", "i3", "--arm", "a:0.4:v1", "--arm", "b:0.3:v2", "--arm", "c:0.3:v3"]
    )
    assert r.exit_code == 2 and "compares two arms, not 3" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(app, [*base, "--name", "i1", "--arm", "a:0.5:v1", "--arm", "b:0.5:v2", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["spec"]["kind"] == "interleaving"
    r = runner.invoke(app, ["experiment", "status", "i1", "--db", store_url, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "interleaving" and out["units"] == 0 and out["preferred"] is None
    r = runner.invoke(app, ["experiment", "status", "i1", "--db", store_url])
    assert (
        r.exit_code == 0
        and "interleaving a (v1) vs b (v2)" in r.stdout
        and "preferred: none yet" in r.stdout
        and "nan" not in r.stdout
    )
    assert "examination curve: assumed: 1/log2(r + 1)" in r.stdout
    # the examination curve: given, or fitted on the placement's randomised lists (none here)
    r = runner.invoke(
        app,
        [*base, "--name", "i2", "--arm", "a:0.5:v1", "--arm", "b:0.5:v2", "--examination", "1,0.5,x"],
    )
    assert r.exit_code == 2 and "expected 'fitted' or numbers" in r.stderr
    r = runner.invoke(
        app,
        [*base, "--name", "i2", "--arm", "a:0.5:v1", "--arm", "b:0.5:v2", "--examination", "1,1.5"],
    )
    assert r.exit_code == 2 and "must be in (0, 1]" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(
        app,
        [*base, "--name", "i2", "--arm", "a:0.5:v1", "--arm", "b:0.5:v2", "--examination", "fitted"],
    )
    assert r.exit_code == 2 and "needs 1,000 and 100" in r.stderr
    assert runner.invoke(app, ["experiment", "stop", "i1", "--db", store_url]).exit_code == 0
    r = runner.invoke(
        app,
        [*base, "--name", "i2", "--arm", "a:0.5:v1", "--arm", "b:0.5:v2", "--examination", "1,0.5", "--json"],
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["spec"]["examination"] == [1.0, 0.5]


def test_the_examination_curve_is_fitted_on_randomised_lists_and_carried_to_the_credits(store: Store) -> None:
    """Lists in random order (an exploration slot's) with clicks from a known position model give
    back its examination curve; lists a fixed ranker served (always the same item first, always
    clicked) are left out, since they cannot tell an item's pull from its slot's."""
    from shelfwise.core.clock import now_ms

    truth = np.array([1.0, 0.7, 0.55, 0.45, 0.4, 0.35, 0.3, 0.28, 0.25, 0.22])
    rng = np.random.default_rng(5)
    items = [f"p{n}" for n in range(40)]
    pull = dict(zip(items, rng.uniform(0.1, 0.6, len(items)), strict=True))
    start = now_ms() - DAY
    imps, events = [], []
    svc = ExperimentService(store)
    with pytest.raises(ExperimentError, match="has 0 randomised lists"):
        svc.fitted_examination("home")
    for n in range(2_000):
        shown = tuple(rng.permutation(items)[:10]) if n % 4 else tuple(items[:10])
        imp = Impression(
            answer_id(start + n),
            "rec",
            "home",
            shown,
            start + n,
            user_id=f"user-{n}",
            propensities=(0.1,) * 10 if n % 4 else None,
        )
        imps.append(imp)
        for pos, item in enumerate(shown, 1):
            fixed = n % 4 == 0
            if (pos == 1 and fixed) or (not fixed and rng.random() < truth[pos - 1] * pull[item]):
                events.append(
                    Event(
                        event_id=f"c-{n}-{pos}",
                        type=EventType.CLICK,
                        ts=imp.ts + 5,
                        user_id=f"user-{n}",
                        item_id=item,
                        context={"rec_id": imp.answer_id, "position": pos},
                    )
                )
    log_impressions(store, imps)
    store.append_events(events)
    attribute_events(store, events)
    curve, source = svc.fitted_examination("home")
    assert len(curve) == 200 and source.startswith("fitted: position model on 1,500 randomised lists")
    assert np.abs(np.array(curve[:10]) - truth).max() < 0.08, curve[:10]
    assert curve[10] < curve[9] and all(0 < x <= 1 for x in curve)
    svc.create(
        spec(
            "fitted-exam",
            kind="interleaving",
            examination=curve,
            examination_source=source,
            arms=[Arm(name="old", share=0.5, version="v1"), Arm(name="new", share=0.5, version="v2")],
        )
    )
    a = svc.assignment("home", "user-1", now=T0 + 1)
    assert a is not None and a.examination == tuple(curve)
    assert svc.status("fitted-exam", persist=False)["examination_source"] == source
    with pytest.raises(ValueError, match="for interleaving experiments"):
        spec("ab-exam", examination=[1.0, 0.5])


def test_cli_reads_a_search_interleaving_experiment_by_its_index_versions_and_modes(store_url: str) -> None:
    from shelfwise.cli.main import app

    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "experiment", "create", "--db", store_url, "--placement", "search", "--kind", "interleaving",
            "--name", "s1", "--arm", "current:0.5", "--arm", "keyword:0.5:::bm25",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["experiment", "status", "s1", "--db", store_url])
    assert (
        r.exit_code == 0
        and "interleaving current (index active, its own mode) vs keyword (index active, bm25)" in r.stdout
    )
    r = runner.invoke(
        app,
        [
            "experiment", "create", "--db", store_url, "--placement", "search", "--kind", "interleaving",
            "--name", "s2", "--arm", "a:0.5:v1", "--arm", "b:0.5:v2", "--traffic", "0.5:1",
        ],
    )  # fmt: skip
    assert r.exit_code == 2 and "not model versions" in r.stderr and len(r.stderr.strip().splitlines()) == 1
