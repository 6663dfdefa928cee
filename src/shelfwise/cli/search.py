"""`shelfwise` commands for search; heavy imports go inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shelfwise.cli.common import JsonOption, emit, fail, open_db, user_errors
from shelfwise.cli.progress import steps_bar

ProductsOpt = Annotated[
    Path, typer.Option("--products", help="products CSV or JSONL (id,title,description,category,brand,price)")
]
MODES = ("bm25", "dense", "hybrid", "rrf", "ltr")


def _engine(
    products: Path | None,
    *,
    dense: bool,
    alpha: float | None,
    spelling: bool,
    bar: Any,
    db: str | None = None,
) -> Any:
    from shelfwise.core.errors import InputFileError
    from shelfwise.search.documents import read_products
    from shelfwise.search.engine import SearchConfig, SearchEngine

    if products is not None:
        items = read_products(products)
    else:  # the catalogue in the store (`shelfwise ingest items …`)
        with open_db(db) as store:
            items = list(store.get_items(store.item_ids()).values())
    if not items:
        raise InputFileError(f"{products or 'the store'}: no products")
    config = SearchConfig(dense=dense, spelling=spelling)
    if alpha is not None:  # one share for every query: the per-class shares give way
        config.alpha, config.class_alpha = alpha, {}
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return SearchEngine.build(items, config, progress=progress)


def search_eval(
    products: ProductsOpt,
    queries: Annotated[Path, typer.Option("--queries", help="TSV query_id<TAB>query")],
    qrels: Annotated[Path, typer.Option("--qrels", help="TREC qrels: query_id 0 product_id grade")],
    mode: Annotated[str, typer.Option("--mode", help="bm25, dense, hybrid, rrf or ltr")] = "hybrid",
    as_json: JsonOption = False,
    min_grade: Annotated[int, typer.Option("--min-grade", help="lowest grade counted relevant")] = 1,
    alpha: Annotated[
        float | None,
        typer.Option("--alpha", help="hybrid: keyword share for every query (default: per class)"),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", help="ltr: cross-validation folds over queries")] = 5,
    spelling: Annotated[bool, typer.Option("--spelling/--no-spelling", help="correct query typos")] = True,
) -> None:
    """nDCG@10, MRR@10, Recall@100 and QPS of one retrieval mode on a labelled query set."""
    with user_errors():
        if mode not in MODES:
            fail(f"--mode must be one of {', '.join(MODES)}", 2)
        from shelfwise.search.documents import read_qrels, read_queries
        from shelfwise.search.evaluate import evaluate_rankings, evaluation_report

        query_texts = read_queries(queries)
        judgments = read_qrels(qrels)
        if not judgments:
            fail(f"{qrels}: no judgments", 2)
        with steps_bar() as bar:
            engine = _engine(products, dense=mode != "bm25", alpha=alpha, spelling=spelling, bar=bar)
            task = bar.add_task(f"{mode} queries", total=len(query_texts))

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            if mode == "ltr":
                from shelfwise.search.ltr import cross_validated_runs

                runs, qps, _ = cross_validated_runs(
                    engine, query_texts, judgments, folds=folds, progress=progress
                )
                report: dict[str, Any] = dict(evaluate_rankings(runs, judgments, min_grade=min_grade))
                report["queries"] = int(report["queries"])
                report["qps"] = round(qps, 1)
                report["folds"] = folds
            else:
                # warm up once (numba compilation, model load) so QPS measures serving
                engine.search(next(iter(query_texts.values()), "x"), k=10, mode=mode, facets=False)
                report = evaluation_report(
                    lambda q: engine.search(q, k=100, mode=mode, facets=False).item_ids,
                    query_texts,
                    judgments,
                    min_grade=min_grade,
                    progress=progress,
                )
        report = {"mode": mode, "products": len(engine), **report}
        if mode in ("hybrid",):
            report["alpha"] = engine.config.alpha

        def human(r: dict[str, Any]) -> str:
            return (
                f"{r['mode']}: nDCG@10 {r['ndcg@10']:.4f}  MRR@10 {r['mrr@10']:.4f}  "
                f"Recall@100 {r['recall@100']:.4f}  QPS {r['qps']:,.1f}  "
                f"({r['queries']} queries, {r['products']:,} products)"
            )

        emit(report, as_json, human)


def search_query(
    query: Annotated[str, typer.Argument(help="what a shopper typed")],
    products: Annotated[
        Path | None, typer.Option("--products", help="products CSV/JSONL; default: the store's catalogue")
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="store URL when no --products is given")] = None,
    mode: Annotated[str, typer.Option("--mode", help="bm25, dense, hybrid or rrf")] = "bm25",
    k: Annotated[int, typer.Option("--k", help="results to show")] = 10,
    sort: Annotated[
        str, typer.Option("--sort", help="relevance, price_asc, price_desc or popularity")
    ] = "relevance",
    as_json: JsonOption = False,
) -> None:
    """Search a product file: corrected spelling, price/brand filters, facets and the top results."""
    with user_errors():
        if mode not in MODES[:4]:
            fail("--mode must be bm25, dense, hybrid or rrf", 2)
        with steps_bar() as bar:
            engine = _engine(products, dense=mode != "bm25", alpha=None, spelling=True, bar=bar, db=db)
        result = engine.search(query, k=k, mode=mode, sort=sort)
        payload = result.to_dict()

        def human(r: dict[str, Any]) -> str:
            lines = []
            if r["showing_results_for"]:
                lines.append(f"showing results for: {r['showing_results_for']}")
            if r["filters"]:
                lines.append("filters: " + ", ".join(f"{k}={v}" for k, v in r["filters"].items()))
            lines.append(f"{r['total']} matches ({r['took_ms']:.1f} ms)")
            for i, h in enumerate(r["hits"], 1):
                price = f"{h['price']:,.2f}" if h["price"] is not None else "-"
                lines.append(f"{i:>3}. {h['title']}  [{h['brand'] or '-'}]  {price}  ({h['item_id']})")
            for name in ("brand", "price"):
                values = r["facets"].get(name) or []
                if values:
                    lines.append(f"{name}: " + ", ".join(f"{v['value']} ({v['count']})" for v in values[:6]))
            return "\n".join(lines)

        emit(payload, as_json, human)


def search_labels(
    out: Annotated[Path, typer.Option("--out", help="directory for products.jsonl, queries.tsv, qrels.txt")],
    as_json: JsonOption = False,
) -> None:
    """Write the graded Flipkart category query set (20k products) in search-eval's format."""
    with user_errors():
        from shelfwise.search.documents import read_dataset
        from shelfwise.search.labelled import flipkart_category_set

        catalogue = read_dataset("flipkart")
        labelled = flipkart_category_set(catalogue, read_dataset("flipkart-1k"))
        paths = labelled.write(out, catalogue)
        payload = {
            "queries": len(labelled.queries),
            "judgments": sum(len(v) for v in labelled.qrels.values()),
            "products": len(catalogue),
            "files": {k: str(v) for k, v in paths.items()},
            "licence": "CC BY-SA 4.0 (derived from Flipkart products)",
        }
        emit(
            payload,
            as_json,
            lambda p: (
                f"{p['queries']} queries, {p['judgments']:,} judgments over {p['products']:,} products "
                f"written to {out}"
            ),
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("search-eval")(search_eval)
    app.command("search")(search_query)
    app.command("search-labels")(search_labels)
