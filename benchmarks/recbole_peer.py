"""RecBole 1.2.1's SASRec on shelfwise's identical leave-one-out split: a peer for our own SASRec.

RecBole's pins (numpy<2, pandas<2.2, scipy<1.13…) clash with the project's venv, so it runs in a venv
of its own (``~/.cache/shelfwise-peers/recbole``, or ``$SHELFWISE_PEER_VENV_RECBOLE``), made on first
use, and this very file is run there as a worker (``--worker DIR``: its top level imports only what
both venvs have).

How the split is kept identical: each test user's training events are written in our training order
with increasing synthetic timestamps, then their held-out test item last, as one atomic ``.inter``
file; RecBole's ``eval_args: {split: {LS: valid_and_test}, order: TO, mode: full}`` then tests the
last item (ours) and validates on the second-to-last. Nothing is filtered (all intervals ``[0,inf)``).
The worker dumps each test user's RecBole test item and top-20 lists; the parent checks the test
items equal ours one by one and scores the lists with shelfwise's own evaluator.

Two protocol facts of RecBole to know when comparing:

- for sequential models RecBole ranks *all* items, the user's history included (its full-sort data
  loader gives no history mask to sequential models); shelfwise excludes training items. So the
  result carries three rows: RecBole's evaluator; the same lists through shelfwise's evaluator with
  nothing excluded (must equal RecBole's: the cross-check); and the history-masked lists through
  shelfwise's evaluator with training items excluded — the row comparable to a shelfwise model.
- RecBole holds the second-to-last item out for validation (early stopping) and never trains on
  it, so it trains on one item per user less than a shelfwise model fitted on ``split.train``.

Cost on this 2-core machine: one Beauty epoch (131,413 training sequences, 65 batches of 2,048
through the transformer at length 50) takes about 600 CPU-seconds, i.e. about 1,540 s of wall
time when the cores are shared with other work (load ~9-13); the default 1,800 s budget then buys
one epoch, far from RecBole's convergence. ``SHELFWISE_RECBOLE_BUDGET_S`` raises it.

    .venv/bin/python -m benchmarks.recbole_peer          # Beauty, prints the JSON
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

PEER_VENV = Path(
    os.environ.get("SHELFWISE_PEER_VENV_RECBOLE", Path.home() / ".cache" / "shelfwise-peers" / "recbole")
)
# recbole 1.2.1 imports ray, thop, tensorboard, plotly… at import time: its declared dependencies
# install them. torch==2.13.0 resolves to the machine's 2.13.0+cpu wheel where one is offered.
PINS = ("recbole==1.2.1", "torch==2.13.0", "numpy<2", "pandas<2.2", "scipy<1.13", "setuptools<81")
TOPK = 20
DATASET = "shelfwise"

# RecBole's SASRec with its own defaults (SASRec.yaml, overall.yaml, sequential.yaml), written out so
# the report states them; only what the protocol needs is set beyond them.
SASREC_DEFAULTS: dict[str, Any] = {
    "hidden_size": 64,
    "inner_size": 256,
    "n_layers": 2,
    "n_heads": 2,
    "hidden_dropout_prob": 0.5,
    "attn_dropout_prob": 0.5,
    "hidden_act": "gelu",
    "loss_type": "CE",
    "MAX_ITEM_LIST_LENGTH": 50,
    "learner": "adam",
    "learning_rate": 0.001,
    "train_batch_size": 2048,
    "eval_batch_size": 4096,
    "weight_decay": 0.0,
    "seed": 2020,
}


def _log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _ensure_venv() -> Path | str:
    """The peer venv's python, made on first use; a string saying why when it cannot be made."""
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        return python
    base = shutil.which("python3.11") or sys.executable
    _log(f"setting up the RecBole peer venv in {PEER_VENV} (pip: {' '.join(PINS)})")
    made = subprocess.run([base, "-m", "venv", str(PEER_VENV)], capture_output=True, text=True)
    if made.returncode:
        return f"RecBole peer not run: `{base} -m venv` failed ({made.stderr.strip()[-300:]})"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *PINS], capture_output=True, text=True, timeout=3600
    )
    if pip.returncode:
        shutil.rmtree(PEER_VENV, ignore_errors=True)  # a half-made venv would be taken as ready next time
        lines = [ln for ln in pip.stderr.splitlines() if "is ignored" not in ln]
        return f"RecBole peer not run: pip install {' '.join(PINS)} failed ({' '.join(lines)[-300:]})"
    return python


def _write_inputs(split: Any, work: Path) -> dict[str, Any]:
    """The atomic ``.inter`` file (training events in our order, then the test item) and our
    training history (for masking). Users without a test item are left out: RecBole would hold
    out their last items too and test users we do not."""
    train = split.train
    test = split.test
    n_targets = np.diff(test.indptr)
    if n_targets.max(initial=0) > 1:
        raise ValueError("RecBole's leave-one-out takes one test item per user; this split has several")
    tested = n_targets > 0
    test_item = np.full(test.shape[0], -1, np.int64)
    test_item[tested] = test.indices[test.indptr[:-1][tested]]
    keep = tested[train.users]
    users, items, ts = train.users[keep], train.items[keep], train.ts[keep]
    order = np.lexsort((np.arange(len(users)), ts, users))  # leave_one_out's own order
    users, items = users[order], items[order]
    t_users = np.flatnonzero(tested)
    all_u = np.concatenate([users, t_users])
    all_i = np.concatenate([items, test_item[t_users]])
    pos_in_user = np.concatenate([np.arange(len(users)), np.full(len(t_users), len(users))])
    order = np.lexsort((pos_in_user, all_u))  # each user's training events, then their test item
    all_u, all_i = all_u[order], all_i[order]
    starts = np.searchsorted(all_u, all_u, side="left")
    stamp = np.arange(len(all_u)) - starts  # 0, 1, 2… within each user
    folder = work / DATASET
    folder.mkdir(parents=True)
    with open(folder / f"{DATASET}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(
            f"{u}\t{i}\t{t}\n" for u, i, t in zip(all_u.tolist(), all_i.tolist(), stamp.tolist(), strict=True)
        )
    np.savez(work / "history.npz", users=users, items=items)
    return {
        "users": len(t_users),
        "items": len(np.unique(all_i)),
        "events": len(all_u),
        "train_events_of_untested_users_left_out": int((~keep).sum()),
    }


class _ListScorer:
    """Top-k lists seen through shelfwise's evaluation: listed items score k..1, the rest 0 (a
    target outside the list ranks k or worse either way, so metrics at k or less are exact)."""

    def __init__(self, users: np.ndarray, lists: np.ndarray, n_items: int) -> None:
        self.row = np.full(int(users.max()) + 1, -1, np.int64)
        self.row[users] = np.arange(len(users))
        self.lists = lists
        self.n_items = n_items

    def score_users(self, users: np.ndarray) -> np.ndarray:
        rows = self.row[users]
        if (rows < 0).any():
            raise ValueError("RecBole returned no list for some test users")
        scores = np.zeros((len(users), self.n_items), np.float32)
        k = self.lists.shape[1]
        np.put_along_axis(scores, self.lists[rows], np.arange(k, 0, -1, dtype=np.float32)[None, :], axis=1)
        return scores


def recbole_sasrec(
    split: Any,
    *,
    time_budget_s: float = 1800.0,
    epochs: int = 300,
    stopping_step: int = 10,
    threads: int = 2,
) -> dict[str, Any] | str:
    """RecBole's SASRec (its defaults) trained and tested on ``split`` (leave-one-out).

    Training stops at RecBole's early stopping (validation NDCG@10 not improved for
    ``stopping_step`` epochs), at ``epochs``, or before an epoch that would end past
    ``time_budget_s`` seconds of fitting (training plus RecBole's per-epoch validation); the best
    validation epoch is tested. Returns RecBole's own figures with ``rows`` (three table rows, see
    the module docstring; compare a shelfwise model with the last one), or why it could not run.
    """
    from shelfwise.evaluation.ranking import evaluate

    python = _ensure_venv()
    if isinstance(python, str):
        return python
    with tempfile.TemporaryDirectory(prefix="shelfwise-recbole-") as tmp:
        work = Path(tmp)
        try:
            counts = _write_inputs(split, work)
        except ValueError as exc:
            return f"RecBole peer not run: {exc}"
        args = {
            "time_budget_s": time_budget_s,
            "epochs": epochs,
            "stopping_step": stopping_step,
            "threads": threads,
        }
        (work / "args.json").write_text(json.dumps(args))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        # RecBole's checkpoints hold more than tensors; torch>=2.6 refuses them without this
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        env["OMP_NUM_THREADS"] = str(threads)
        tail: deque[str] = deque(maxlen=30)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        with subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--worker", str(work)],
            cwd=work,  # RecBole writes log/ and log_tensorboard/ under the working directory
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:
                tail.append(line.rstrip())
                if line.startswith("recbole:"):
                    _log(line.rstrip())
            code = proc.wait()  # the worker bounds itself: the budget stops training
        wall = time.perf_counter() - started
        load_after = os.getloadavg()[0]
        if code or not (work / "out.json").is_file():
            errors = [ln for ln in tail if ln and not ln.startswith("recbole:")]
            return f"RecBole peer failed (exit {code}): {' | '.join(errors[-3:]) or '?'}"
        out = json.loads((work / "out.json").read_text())
        dumped = np.load(work / "lists.npz")
        users, positives = dumped["users"], dumped["positives"]
        raw, masked = dumped["top_raw"], dumped["top_masked"]
    test = split.test
    ours = np.full(test.shape[0], -1, np.int64)
    tested = np.diff(test.indptr) > 0
    ours[tested] = test.indices[test.indptr[:-1][tested]]
    same_users = len(users) == int(tested.sum()) and len(np.unique(users)) == len(users)
    same_items = same_users and bool((ours[users] == positives).all())
    if not same_items:
        return (
            f"RecBole peer discarded: its test set is not ours ({len(users)} RecBole test users vs "
            f"{int(tested.sum())}; {int((ours[users] != positives).sum())} test items differ)"
        )
    rb = out["recbole_counts"]
    n_items = test.shape[1]
    keys = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10")
    same = evaluate(_ListScorer(users, raw, n_items), split, exclude_train=False).metrics
    excl = evaluate(_ListScorer(users, masked, n_items), split).metrics
    config = {**SASREC_DEFAULTS, "epochs": epochs, "stopping_step": stopping_step, "valid_metric": "NDCG@10"}
    head = {
        "model": "peer: RecBole 1.2.1 SASRec (its defaults) + RecBole's evaluator (history not excluded)",
        **{k: out["recbole"][k] for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")},
        "train_seconds": out["fit_seconds"],
    }
    rows = [
        head,
        {
            "model": "same RecBole SASRec lists, shelfwise evaluation, nothing excluded (cross-check)",
            **{k: same[k] for k in keys},
            "train_seconds": out["fit_seconds"],
        },
        {
            "model": "same RecBole SASRec, history masked, shelfwise evaluation (train items excluded)",
            **{k: excl[k] for k in keys},
            "train_seconds": out["fit_seconds"],
        },
    ]
    return {
        **head,
        "epochs": out["epochs"],
        "best_epoch": out["best_epoch"],
        "stopped_by": out["stopped_by"],
        "converged": out["stopped_by"] == "early stopping",
        "seconds_per_epoch": out["seconds_per_epoch"],
        "test_seconds": out["test_seconds"],
        "wall_seconds": round(wall, 1),
        "prep_seconds": out["prep_seconds"],
        "load_avg_1m": [round(load_before, 1), round(load_after, 1)],  # the 2 cores are shared
        "valid_ndcg@10": out["valid_ndcg@10"],
        "valid_curve": out["valid_curve"],
        "config": config,
        "recbole": rb,
        "ours": counts,
        "test_items_identical": same_items,
        "nothing_filtered": rb["users"] == counts["users"]
        and rb["items"] == counts["items"]
        and rb["sequences"] == counts["events"] - counts["users"],
        "comparable": rows[2],
        "rows": rows,
    }


def _worker(work: Path) -> None:  # pragma: no cover - runs in the peer venv
    """In the RecBole venv: train, test, dump lists. Progress lines start with ``recbole:``."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    args = json.loads((work / "args.json").read_text())
    torch.set_num_threads(int(args["threads"]))

    def say(msg: str) -> None:
        print(f"recbole: {msg}", file=sys.stderr, flush=True)

    config = Config(
        model="SASRec",
        dataset=DATASET,
        config_dict={
            **SASREC_DEFAULTS,
            "data_path": str(work),
            "checkpoint_dir": str(work / "saved"),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {
                "split": {"LS": "valid_and_test"},
                "order": "TO",
                "mode": "full",
                "group_by": "user",
            },
            "train_neg_sample_args": None,
            "user_inter_num_interval": "[0,inf)",
            "item_inter_num_interval": "[0,inf)",
            "rm_dup_inter": None,
            "metrics": ["Recall", "NDCG"],
            "topk": [10, 20],
            "valid_metric": "NDCG@10",
            "metric_decimal_place": 6,
            "epochs": int(args["epochs"]),
            "stopping_step": int(args["stopping_step"]),
            "eval_step": 1,
            "show_progress": False,
            "worker": 0,
            "use_gpu": False,
            "state": "WARNING",
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    prep_start = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    counts = {
        "users": dataset.user_num - 1,  # id 0 is RecBole's padding
        "items": dataset.item_num - 1,
        # RecBole turns each event but a user's first into a (prefix → item) row: events - users
        "sequences": dataset.inter_num,
        "train_sequences": len(train_data.dataset),
        "valid_users": len(valid_data.dataset),
        "test_users": len(test_data.dataset),
    }
    prep_seconds = time.perf_counter() - prep_start
    say(f"data ({prep_seconds:.0f}s): {counts}")
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    budget = float(args["time_budget_s"])
    marks: list[float] = []
    valid_scores: list[float] = []

    class OutOfTime(Exception):
        pass

    def after_epoch(epoch: int, score: float) -> None:
        marks.append(time.perf_counter())
        valid_scores.append(float(score))
        took = marks[-1] - (marks[-2] if len(marks) > 1 else fit_start)
        say(f"epoch {epoch}: valid ndcg@10 {score:.4f} ({took:.1f}s, {marks[-1] - fit_start:.0f}s in)")
        if epoch + 1 < int(args["epochs"]) and marks[-1] - fit_start + took > budget:
            raise OutOfTime

    stopped_by = "epochs"
    fit_start = time.perf_counter()
    try:
        trainer.fit(train_data, valid_data, verbose=False, saved=True, callback_fn=after_epoch)
        if len(valid_scores) < int(args["epochs"]):
            stopped_by = "early stopping"
    except OutOfTime:
        stopped_by = "time budget"
    fit_seconds = time.perf_counter() - fit_start
    test_start = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_seconds = time.perf_counter() - test_start
    say(f"test: {dict(result)}")

    # the same best model again, batch by batch as RecBole's evaluator does, to dump the lists
    uid, iid = dataset.uid_field, dataset.iid_field
    user_token = np.asarray(dataset.field2id_token[uid]).copy()
    item_token = np.asarray(dataset.field2id_token[iid]).copy()
    user_token[0] = item_token[0] = "-1"  # RecBole's [PAD]
    user_token, item_token = user_token.astype(np.int64), item_token.astype(np.int64)
    to_rb = np.zeros(int(item_token.max()) + 1, np.int64)
    to_rb[item_token[1:]] = np.arange(1, len(item_token))
    hist = np.load(work / "history.npz")
    h_users, h_items = hist["users"], to_rb[hist["items"]]
    h_order = np.argsort(h_users, kind="stable")
    h_users, h_items = h_users[h_order], h_items[h_order]
    h_start = np.searchsorted(h_users, np.arange(int(user_token.max()) + 2))
    model.eval()
    got_users, got_pos, top_raw, top_masked = [], [], [], []
    with torch.no_grad():
        for interaction, _, _, positive_i in test_data:
            scores = model.full_sort_predict(interaction).view(-1, dataset.item_num)
            scores[:, 0] = -np.inf
            ours_u = user_token[interaction[uid].numpy()]
            top_raw.append(torch.topk(scores, TOPK).indices.numpy())
            for row, u in enumerate(ours_u.tolist()):
                scores[row, torch.from_numpy(h_items[h_start[u] : h_start[u + 1]])] = -np.inf
            top_masked.append(torch.topk(scores, TOPK).indices.numpy())
            got_users.append(ours_u)
            got_pos.append(item_token[positive_i.numpy()])
    np.savez(
        work / "lists.npz",
        users=np.concatenate(got_users),
        positives=np.concatenate(got_pos),
        top_raw=item_token[np.concatenate(top_raw)],
        top_masked=item_token[np.concatenate(top_masked)],
    )
    best = len(valid_scores) - 1 - int(np.argmax(valid_scores[::-1]))  # RecBole keeps the last best
    (work / "out.json").write_text(
        json.dumps(
            {
                "recbole": {k: float(v) for k, v in result.items()},
                "fit_seconds": round(fit_seconds, 1),
                "epochs": len(valid_scores),
                "best_epoch": best,
                "valid_ndcg@10": round(valid_scores[best], 6),
                "valid_curve": [round(v, 4) for v in valid_scores],
                "prep_seconds": round(prep_seconds, 1),
                "stopped_by": stopped_by,
                "seconds_per_epoch": round(fit_seconds / max(len(valid_scores), 1), 1),
                "test_seconds": round(test_seconds, 1),
                "recbole_counts": counts,
            }
        )
    )


def main() -> None:
    from shelfwise.features.dataset import Dataset
    from shelfwise.features.splits import leave_one_out

    root = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("SHELFWISE_SHARED_DATA", root.parent / "shared" / "data"))
    budget = float(os.environ.get("SHELFWISE_RECBOLE_BUDGET_S", "1800"))
    ds = Dataset.from_file(shared / "amazon_beauty" / "Beauty.txt", "sequences")
    split = leave_one_out(ds)
    out = recbole_sasrec(split, time_budget_s=budget)
    print(json.dumps(out, indent=2) if isinstance(out, dict) else out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(Path(sys.argv[2]))
    else:
        main()
