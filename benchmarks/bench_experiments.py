"""Experiments against a shopper simulator fitted on Online Retail (issue 17): the SRM check, the
off-policy estimates' errors against the simulator's truth, and the users A/B testing and team-draft
interleaving need for a known 2% NDCG difference. Each figure is one run of the command a user runs;
the OPE errors are also given over five seeds, because one seed's error is itself a random draw.

The simulator's assumed parts (examination 1/log2(rank+1), target click rate 0.05, weights) were
set before any of these runs and not tuned on them.

    python -m benchmarks.run experiments
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

SEEDS = (0, 1, 2, 3, 4)


def _simulate(scenario: str, seed: int) -> tuple[dict[str, Any], float]:
    args = ["experiment", "simulate", "--scenario", scenario, "--seed", str(seed), "--json"]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "shelfwise.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"experiment simulate --scenario {scenario} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout), round(time.perf_counter() - started, 1)


def run() -> dict[str, Any]:
    command = "shelfwise experiment simulate --scenario {} --seed 0 --json"
    srm, srm_s = _simulate("srm", 0)
    ope_runs = [_simulate("ope", seed) for seed in SEEDS]
    ope, ope_s = ope_runs[0]
    inter, inter_s = _simulate("interleaving-vs-ab", 0)
    dr = sorted(r["dr_error"] for r, _ in ope_runs)
    ips = sorted(r["ips_error"] for r, _ in ope_runs)
    snips = sorted(r["snips_error"] for r, _ in ope_runs)
    rows = [
        (
            "srm: injected 52/48 at 20k users",
            f"srm_flagged = {srm['injected']['srm_flagged']} (p = {srm['injected']['p']:.2g})",
            "true",
        ),
        (
            "srm: fair 50/50 at 20k users",
            f"srm_flagged = {srm['fair']['srm_flagged']} (p = {srm['fair']['p']:.3f})",
            "false",
        ),
        (
            "ope (seed 0): ips / snips / dr relative error",
            f"{ope['ips_error']:.2%} / {ope['snips_error']:.2%} / {ope['dr_error']:.2%}",
            "DR ≤ 5%",
        ),
        ("ope (seed 0): DR standard error / truth", f"{ope['dr_relative_se']:.2%}", "—"),
        (
            f"ope over seeds {SEEDS[0]}–{SEEDS[-1]}: max ips / snips / dr error",
            f"{ips[-1]:.2%} / {snips[-1]:.2%} / {dr[-1]:.2%}",
            "DR ≤ 5%",
        ),
        (
            f"ope over seeds {SEEDS[0]}–{SEEDS[-1]}: seeds with DR error ≤ 5%",
            f"{sum(e <= 0.05 for e in dr)} of {len(dr)}",
            "all",
        ),
        ("interleaving-vs-ab (seed 0): ab_users", f"{inter['ab_users']:,}", "—"),
        ("interleaving-vs-ab (seed 0): interleaving_users", f"{inter['interleaving_users']:,}", "—"),
        ("interleaving-vs-ab (seed 0): ratio", f"{inter['ratio']:.1f}", "≥ 10"),
        (
            "interleaving with the per-user winner rule instead: users, ratio",
            f"{inter['interleaving_users_winner_rule']:,}, {inter['ratio_winner_rule']:.1f}",
            "—",
        ),
        (
            "simulated power at those sizes (A/B, interleaving; 100 runs each)",
            f"{inter.get('ab_simulated_power')}, {inter.get('interleaving_simulated_power')}",
            "≈ 0.8",
        ),
    ]
    table = "\n".join(
        ["| measure | measured | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    )
    table += (
        f"\n\nSimulator fitted on {ope['simulator']['source']} (first 150,000 lines: "
        f"{ope['simulator']['buyers']:,} buyers, {ope['simulator']['items']:,} items). "
        f"OPE: {ope['logs']:,} logged impressions, ε-greedy logging with ε = {ope['epsilon']}. "
        f"Command: `{command.format('…')}`."
    )
    return {
        "name": "experiments_simulate",
        "table": table,
        "command": command,
        "srm": srm,
        "ope": ope,
        "ope_over_seeds": {
            "seeds": list(SEEDS),
            "ips_error": [r["ips_error"] for r, _ in ope_runs],
            "snips_error": [r["snips_error"] for r, _ in ope_runs],
            "dr_error": [r["dr_error"] for r, _ in ope_runs],
        },
        "interleaving_vs_ab": inter,
        "command_seconds": {"srm": srm_s, "ope": ope_s, "interleaving-vs-ab": inter_s},
    }
