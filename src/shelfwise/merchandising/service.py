"""``Merchandising``: the one object the API, the CLI and the pages call to read, save and apply
placements, their rules and the shop's search settings.

Saves are validated (pydantic, then against the catalogue: a rule naming an unknown item is refused
with the field that names it) and stored as a new version; reads are cached per process and
refreshed when the store's document stamp changes (polled every ``refresh_seconds``), so a saved
rule holds on the next request of this process and within ``refresh_seconds`` on the others.

>>> svc = Merchandising(store)                                          # doctest: +SKIP
>>> svc.save_rules("home", {"rules": [{"kind": "pin", "item_id": "85123A", "position": 1}]})  # doctest: +SKIP
>>> svc.apply("home", candidates, k=10).items[0].item_id                 # doctest: +SKIP
'85123A'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shelfwise.core.polled import Polled
from shelfwise.data.schemas import Item
from shelfwise.merchandising.engine import Candidate, MerchResult, apply_rules
from shelfwise.merchandising.placements import STANDARD, Placement, PlacementNotFound, default_placement
from shelfwise.merchandising.rules import RuleSet
from shelfwise.merchandising.search_rules import QueryDecision, SearchSettings, Synonym
from shelfwise.store.base import Store
from shelfwise.store.journal import store_unavailable
from shelfwise.store.merch_documents import (
    Document,
    document_history,
    documents_stamp,
    get_document,
    list_documents,
    save_document,
)

PLACEMENT = "placement"
SEARCH = "search"
SEARCH_DOC = "settings"


@dataclass(frozen=True)
class StoredPlacement:
    placement: Placement
    version: int  # 0: the standard default, never saved
    saved_at: int | None = None
    author: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "saved_at": self.saved_at,
            "author": self.author,
            **self.placement.model_dump(mode="json"),
        }


_Key = tuple[str, str]  # (kind, name) of a document


@dataclass
class _Documents:
    """What was read under one stamp of the shop's documents. A moved stamp (or a save here) brings
    a new, empty one: a read that finishes after that lands in the old one, which nobody reads any
    more, so a document read just before a change never stands in for the changed one."""

    stamp: tuple[int, int]
    found: dict[_Key, Any] = field(default_factory=dict)


class Merchandising:
    def __init__(
        self,
        store: Store,
        *,
        shop: str = "default",
        refresh_seconds: float = 0.5,
        wait_at_most: float | None = None,
    ) -> None:
        self.store = store
        self.shop = shop
        self.refresh_seconds = refresh_seconds
        # the stamp is read outside any lock by one request per poll: while it waits on a slow store,
        # the others answer with the documents last read; the store down: they still hold
        self._documents: Polled[_Documents] = Polled(
            self._read_stamp,
            every=refresh_seconds,
            keep_last_on=store_unavailable,
            wait_at_most=wait_at_most,
            name="merchandising documents' stamp",
        )

    # --- placements -----------------------------------------------------------------------------
    def placements(self) -> list[StoredPlacement]:
        """Every placement: the standard ones (saved or default) and any the shop added."""
        saved = {d.name: _stored(d) for d in list_documents(self.store, kind=PLACEMENT, shop=self.shop)}
        out = [saved.get(name) or StoredPlacement(default_placement(name), 0) for name in STANDARD]
        out += [p for name, p in sorted(saved.items()) if name not in STANDARD]
        return out

    def placement(self, name: str, *, version: int | None = None) -> StoredPlacement:
        """The latest (or a given) version; PlacementNotFound for an unknown name or version."""
        documents = None
        if version is None:
            documents, cached = self._cached((PLACEMENT, name))
            if cached is not None:
                return cached
        try:
            doc = get_document(self.store, kind=PLACEMENT, name=name, shop=self.shop, version=version)
        except Exception as exc:
            if version is not None or not store_unavailable(exc):
                raise
            # never read and the store is down: the standard placement, no rules (not cached)
            return StoredPlacement(default_placement(name), 0)
        if doc is None:
            if version not in (None, 0):
                raise PlacementNotFound(f"placement {name!r} has no version {version}")
            found = StoredPlacement(default_placement(name), 0)
        else:
            found = _stored(doc)
        if documents is not None:
            documents.found[(PLACEMENT, name)] = found
        return found

    def history(self, name: str) -> list[StoredPlacement]:
        docs = document_history(self.store, kind=PLACEMENT, name=name, shop=self.shop)
        if not docs:
            default_placement(name)  # raises for an unknown name
        return [_stored(d) for d in docs]

    def save_placement(
        self,
        name: str,
        data: Mapping[str, Any] | Placement,
        *,
        author: str | None = None,
        comment: str | None = None,
    ) -> StoredPlacement:
        """Validate and store ``data`` as the next version of placement ``name``."""
        body = data.model_dump(mode="json") if isinstance(data, Placement) else {**data, "name": name}
        placement = Placement.parse({**body, "name": name})
        placement.rules.check_items(self._known)
        doc = save_document(
            self.store,
            kind=PLACEMENT,
            name=name,
            body=placement.model_dump(mode="json"),
            shop=self.shop,
            author=author,
            comment=comment,
        )
        self._invalidate()
        return _stored(doc)

    def rules(self, name: str) -> RuleSet:
        return self.placement(name).placement.rules

    def save_rules(
        self, name: str, rules: Mapping[str, Any] | RuleSet, *, author: str | None = None
    ) -> StoredPlacement:
        """A new version of placement ``name`` with ``rules`` in place of its old ones."""
        current = self.placement(name).placement
        ruleset = rules if isinstance(rules, RuleSet) else RuleSet.parse(rules, where="")
        return self.save_placement(
            name, current.model_copy(update={"rules": ruleset}), author=author, comment="rules changed"
        )

    def rollback(self, name: str, version: int, *, author: str | None = None) -> StoredPlacement:
        """Save version ``version`` again as the newest (the versions in between are kept)."""
        old = self.placement(name, version=version).placement
        return self.save_placement(name, old, author=author, comment=f"rollback to version {version}")

    # --- search management ----------------------------------------------------------------------
    def search_settings(self) -> tuple[SearchSettings, int]:
        documents, cached = self._cached((SEARCH, SEARCH_DOC))
        if cached is not None:
            return cached
        try:
            doc = get_document(self.store, kind=SEARCH, name=SEARCH_DOC, shop=self.shop)
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            return SearchSettings(), 0  # never read and the store is down: no synonyms or rules (not cached)
        found = (
            (SearchSettings(), 0) if doc is None else (SearchSettings.model_validate(doc.body), doc.version)
        )
        if documents is not None:
            documents.found[(SEARCH, SEARCH_DOC)] = found
        return found

    def save_search_settings(
        self, data: Mapping[str, Any] | SearchSettings, *, author: str | None = None
    ) -> tuple[SearchSettings, int]:
        settings = data if isinstance(data, SearchSettings) else SearchSettings.parse(data)
        settings.check_items(self._known)
        doc = save_document(
            self.store,
            kind=SEARCH,
            name=SEARCH_DOC,
            body=settings.model_dump(mode="json"),
            shop=self.shop,
            author=author,
        )
        self._invalidate()
        return settings, doc.version

    def save_synonyms(
        self, synonyms: Iterable[Mapping[str, Any] | Synonym], *, author: str | None = None
    ) -> int:
        current, _ = self.search_settings()
        body = {**current.model_dump(mode="json"), "synonyms": [_plain(s) for s in synonyms]}
        return self.save_search_settings(body, author=author)[1]

    def add_synonym(
        self, terms: Sequence[str], *, direction: str = "two-way", author: str | None = None
    ) -> tuple[SearchSettings, int]:
        """Add one synonym to the shop's search settings (a new version)."""
        current, _ = self.search_settings()
        body = current.model_dump(mode="json")
        body["synonyms"] = [*body["synonyms"], {"terms": list(terms), "direction": direction}]
        return self.save_search_settings(body, author=author)

    def add_redirect(self, query: str, url: str, *, author: str | None = None) -> tuple[SearchSettings, int]:
        """Add (or replace) the redirect of ``query`` (a new version)."""
        from shelfwise.merchandising.search_rules import normalise_query

        current, _ = self.search_settings()
        body = current.model_dump(mode="json")
        others = [r for r in body["redirects"] if r["query"] != normalise_query(query)]
        body["redirects"] = [*others, {"query": query, "url": url}]
        return self.save_search_settings(body, author=author)

    def query_report(self, **options: Any) -> dict[str, Any]:
        """The zero-result and low-click query report (``merchandising.query_report``)."""
        from shelfwise.merchandising.query_report import query_report

        return query_report(self.store, settings=self.search_settings()[0], **options)

    def for_query(self, text: str) -> QueryDecision:
        return self.search_settings()[0].for_query(text)

    # --- applying -------------------------------------------------------------------------------
    def apply(
        self,
        name: str,
        candidates: Sequence[Candidate],
        *,
        k: int | None = None,
        now: dt.datetime | None = None,
        target_shares: Mapping[str, float] | None = None,
        extra_rules: RuleSet | None = None,
        items: Mapping[str, Item] | None = None,
    ) -> MerchResult:
        """Placement ``name``'s rules (plus ``extra_rules``, e.g. a query's) over ``candidates``."""
        placement = self.placement(name).placement
        rules = placement.rules
        if extra_rules is not None and extra_rules.rules:
            rules = RuleSet.model_construct(rules=[*extra_rules.rules, *rules.rules])
        if items is None:
            wanted = {c.item_id for c in candidates} | rules.item_ids()
            items = self.store.get_items(wanted)
        return apply_rules(
            candidates, rules, items=items, k=k or placement.k, now=now, target_shares=target_shares
        )

    # --- cache ----------------------------------------------------------------------------------
    def _known(self, ids: Iterable[str]) -> set[str]:
        return set(self.store.get_items(ids))

    def _read_stamp(self, last: _Documents | None) -> _Documents:
        stamp = documents_stamp(self.store, shop=self.shop)
        return last if last is not None and last.stamp == stamp else _Documents(stamp)

    def _cached(self, key: _Key) -> tuple[_Documents | None, Any]:
        """The documents of the current stamp (None: none read yet), and ``key``'s among them (None:
        not read under this stamp). Store what is read for ``key`` in those documents, not in newer ones."""
        documents = self._documents.get()
        return documents, None if documents is None else documents.found.get(key)

    def _invalidate(self) -> None:
        self._documents.drop()  # saved here: read again at once, and nothing read before it kept


def _stored(doc: Document) -> StoredPlacement:
    return StoredPlacement(Placement.model_validate(doc.body), doc.version, doc.created_at, doc.author)


def _plain(value: Mapping[str, Any] | Synonym) -> dict[str, Any]:
    return value.model_dump(mode="json") if isinstance(value, Synonym) else dict(value)
