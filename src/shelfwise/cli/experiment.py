"""`shelfwise experiment simulate`: run an experiment against a shopper simulator fitted on real
behaviour, where the truth is known. Heavy imports go inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import emit, fail, open_db, user_errors

SCENARIOS = ("srm", "ope", "interleaving-vs-ab")
RETAIL = Path(__file__).resolve().parents[3] / "data" / "online_retail" / "online_retail.csv.gz"


def _fit(db: str | None, data: Path | None, limit: int, seed: int) -> Any:
    from shelfwise.cli.progress import bytes_bar
    from shelfwise.core.errors import InputFileError
    from shelfwise.evaluation.simulator import ShopperSimulator
    from shelfwise.features.dataset import Dataset

    if db is not None and data is not None:
        raise InputFileError("give --db URL or --data PATH, not both")
    if db is not None:
        with open_db(db) as store:
            ds = Dataset.from_store(store)
        if len(ds) == 0:
            raise InputFileError(
                "the store holds no user-item events to fit a simulator on",
                hint="run `shelfwise ingest events` first",
            )
    else:
        path = data or RETAIL
        if not path.is_file():
            raise InputFileError(f"{path}: no such file (the Online Retail file, format online-retail)")
        with bytes_bar(f"read {path.name}") as progress:
            ds = Dataset.from_file(path, "online-retail", limit=limit, progress=progress)
    try:
        return ShopperSimulator.fit(ds, seed=seed)
    except ValueError as exc:
        raise InputFileError(str(exc)) from None


def _human(out: dict[str, Any]) -> str:
    scenario = out["scenario"]
    fit = out["simulator"]
    head = (
        f"simulator fitted on {fit['source']}: {fit['buyers']:,} buyers, {fit['items']:,} items, "
        f"{fit['purchases']:,} purchases"
        if fit
        else f"{out['users']:,} users assigned by salted hash, tested against 50/50 at p < {out['alpha']}"
    )
    if scenario == "srm":
        lines = [
            f"{name}: counts {r['counts']}, p = {r['p']:.3g}, srm_flagged = {r['srm_flagged']}"
            for name, r in ((n, out[n]) for n in ("injected", "fair"))
        ]
    elif scenario == "ope":
        lines = [
            f"true click rate of the candidate policy: {out['true_value']:.4f}",
            *(
                f"{k.upper():>5}: {out['estimates'][k]:.4f} ± {out['estimates'][k + '_se']:.4f} (s.e.), "
                f"relative error {out[k + '_error']:.2%}"
                for k in ("ips", "snips", "dr")
            ),
        ]
    else:
        lines = [
            f"NDCG@{out['k']}: A {out['ndcg_a']:.4f}, B {out['ndcg_b']:.4f} "
            f"({out['ndcg_relative_difference']:.2%} lower)",
            f"users for 80% power: A/B {out['ab_users']:,}, interleaving {out['interleaving_users']:,} "
            f"(ratio {out['ratio']:.1f})",
        ]
    return "\n".join([head, *lines])


def register(app: typer.Typer) -> None:
    """Add the ``experiment`` command group to the top-level app."""
    experiment_app = typer.Typer(help="Online experiments: simulate them against a known truth.")
    app.add_typer(experiment_app, name="experiment")

    @experiment_app.command("simulate")
    def simulate(
        scenario: Annotated[str, typer.Option("--scenario", help="srm, ope or interleaving-vs-ab")],
        seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
        db: Annotated[
            str | None, typer.Option("--db", help="fit the simulator on this store's events")
        ] = None,
        data: Annotated[
            Path | None,
            typer.Option("--data", help="an Online Retail file to fit on (default: the vendored one)"),
        ] = None,
        limit: Annotated[
            int, typer.Option("--limit", min=1000, help="read only the first N lines of the file")
        ] = 150_000,
        users: Annotated[
            int, typer.Option("--users", min=100, help="simulated users (srm, interleaving-vs-ab)")
        ] = 20_000,
        logs: Annotated[int, typer.Option("--logs", min=100, help="logged impressions (ope)")] = 200_000,
        epsilon: Annotated[
            float, typer.Option("--epsilon", min=0.01, max=1.0, help="ope: the logging policy's exploration")
        ] = 0.5,
        check_runs: Annotated[
            int, typer.Option("--check-runs", min=0, help="simulated experiments checking each power figure")
        ] = 100,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
    ) -> None:
        """Run an experiment on simulated shoppers and compare its answer with the simulator's truth."""

        if scenario not in SCENARIOS:
            fail(f"--scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}", 2)
        with user_errors():
            from shelfwise.evaluation import simulated_experiments as sx

            if scenario == "srm":
                # assignment alone: no shopper behaviour is involved, so no simulator is fitted
                out: dict[str, Any] = {"simulator": None, **sx.srm_scenario(users=users, seed=seed)}
            else:
                sim = _fit(db, data, limit, seed)
                if scenario == "ope":
                    out = sx.ope_scenario(sim, logs=logs, epsilon=epsilon, seed=seed)
                else:
                    out = sx.interleaving_vs_ab_scenario(sim, users=users, check_runs=check_runs, seed=seed)
                out = {"simulator": sim.meta, **out}
            emit({"scenario": scenario, "seed": seed, **out}, as_json, _human)
