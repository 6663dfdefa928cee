"""A graded search test set built from the Flipkart catalogue's own structure, no human labels needed.

Flipkart product ids (``pid``) start with a three-letter product-vertical code (``SHO…`` shoes,
``WAT…`` watches, ``NKC…`` necklaces); the 1,002-item subset carries each product's category tree.
For every vertical with at least ``min_examples`` items in the subset, the query is the deepest
category node that at least half of those items share (e.g. ``wrist watches``, ``coffee mugs``),
and over the whole 20k catalogue:

* grade 2: the product's vertical is one whose query is this text (same kind of product);
* grade 1: its vertical sits under the same second-level category (``footwear > womens footwear``);
* unjudged (0): everything else.

Labels come from ids and the category tree, never from title words, so they do not favour keyword
over semantic retrieval. Derived from CC BY-SA 4.0 data: the same licence applies to the output.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shelfwise.data.schemas import Item


@dataclass
class LabelledSet:
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    description: str = ""

    def write(self, directory: Path, items: Sequence[Item] | None = None) -> dict[str, Path]:
        """``queries.tsv``, ``qrels.txt`` and, given items, ``products.jsonl`` for ``search-eval``."""
        import json

        directory.mkdir(parents=True, exist_ok=True)
        paths = {"queries": directory / "queries.tsv", "qrels": directory / "qrels.txt"}
        paths["queries"].write_text("".join(f"{q}\t{t}\n" for q, t in self.queries.items()))
        lines = [f"{q} 0 {d} {g}" for q, docs in self.qrels.items() for d, g in sorted(docs.items())]
        paths["qrels"].write_text("\n".join(lines) + "\n")
        if items is not None:
            paths["products"] = directory / "products.jsonl"
            with paths["products"].open("w", encoding="utf-8") as out:
                for it in items:
                    row = {
                        "id": it.item_id,
                        "title": it.title,
                        "description": it.description,
                        "category": it.category,
                        "brand": it.brand,
                        "price": it.price,
                    }
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return paths


def vertical(item: Item) -> str | None:
    pid = str(item.attributes.get("pid") or "")
    return pid[:3].upper() if len(pid) >= 3 and pid[:3].isalpha() else None


def _query_node(paths: list[list[str]]) -> str | None:
    """The deepest node (depth ≥ 2) at least half of the paths share at the same depth."""
    best: str | None = None
    for depth in range(1, 5):
        nodes = Counter(p[depth] for p in paths if len(p) > depth + 1)  # skip the title-like leaf
        if not nodes:
            break
        node, count = nodes.most_common(1)[0]
        if count * 2 < len(paths):
            break
        best = node
    return best


def flipkart_category_set(
    catalogue: Sequence[Item], annotated: Sequence[Item], *, min_examples: int = 3, min_relevant: int = 5
) -> LabelledSet:
    """The labelled set for ``catalogue`` (e.g. the 20k items), using ``annotated`` (the 1k subset with
    category trees) to name each vertical."""
    paths_by_vertical: dict[str, list[list[str]]] = defaultdict(list)
    brands: set[str] = set()
    for it in annotated:
        v = vertical(it)
        if v and it.category:
            paths_by_vertical[v].append(it.category.split(" > "))
        if it.brand:
            brands.add(it.brand.lower())
    query_of: dict[str, str] = {}
    top_of: dict[str, str] = {}
    for v, paths in paths_by_vertical.items():
        seconds = Counter(" > ".join(p[:2]) for p in paths)
        top_of[v] = seconds.most_common(1)[0][0]
        if len(paths) < min_examples:
            continue
        node = _query_node(paths)
        # a node named after the subset's one seller ("akup coffee mugs") becomes the product type
        words = [w for w in (node or "").split() if w not in brands]
        if words:
            query_of[v] = " ".join(words)
    by_vertical: dict[str, list[str]] = defaultdict(list)
    for it in catalogue:
        v = vertical(it)
        if v:
            by_vertical[v].append(it.item_id)
    texts = sorted(set(query_of.values()))
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for n, text in enumerate(texts, 1):
        verticals = [v for v, q in query_of.items() if q == text]
        tops = {top_of[v] for v in verticals}
        grades: dict[str, int] = {}
        for v, ids in by_vertical.items():
            grade = 2 if v in verticals else (1 if top_of.get(v) in tops else 0)
            if grade:
                for item_id in ids:
                    grades[item_id] = grade
        if sum(1 for g in grades.values() if g == 2) < min_relevant:
            continue
        qid = f"fk{n}"
        queries[qid] = text
        qrels[qid] = grades
    return LabelledSet(
        queries=queries,
        qrels=qrels,
        description="Flipkart category queries: grade 2 same product vertical, 1 same top-level category",
    )
