"""Search management a shop edits without a deploy: synonyms (one-way and two-way), redirects,
stop words, and query rules (pin items or apply any rule set for a query).

``SearchSettings.rewrite(text)`` gives the query the engine should run (stop words dropped, synonym
expansions listed) and ``SearchSettings.for_query(text)`` the redirect and rules that hold for it.

>>> s = SearchSettings.model_validate({"synonyms": [{"terms": ["tee", "t-shirt"]}],
...                                    "redirects": [{"query": "returns", "url": "/help/returns"}]})
>>> s.rewrite("Tee").expansions, s.for_query("returns").redirect
(['t-shirt'], '/help/returns')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shelfwise.merchandising.rules import NAME, Rule, RuleError, RuleSet

_SPACE = re.compile(r"\s+")


def normalise_query(text: str) -> str:
    return _SPACE.sub(" ", text.strip().lower())


def _not_blank(normalised: str, what: str) -> str:
    # spaces only would be stored as "" and refused when read back (a 500 on every later read)
    if not normalised:
        raise ValueError(f"{what} is blank (spaces only)")
    return normalised


class Synonym(BaseModel):
    """Two-way (default): every term stands for every other. One-way: ``terms[0]`` also finds the rest
    ("phone" → "mobile", "smartphone"), not the other way round."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    terms: list[NAME] = Field(min_length=2, max_length=50)
    direction: Literal["two-way", "one-way"] = "two-way"

    @field_validator("terms")
    @classmethod
    def _norm(cls, v: list[str]) -> list[str]:
        out = list(dict.fromkeys(_not_blank(normalise_query(t), "a synonym term") for t in v))
        if len(out) < 2:
            raise ValueError("a synonym needs at least two different terms")
        return out


class Redirect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    query: NAME
    url: str = Field(min_length=1, max_length=2000, pattern=r"^(/|https?://)")

    @field_validator("query")
    @classmethod
    def _norm(cls, v: str) -> str:
        return _not_blank(normalise_query(v), "the query")


class QueryRule(BaseModel):
    """Rules for the queries that equal (``match="exact"``) or contain (``"contains"``) ``query``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: NAME
    match: Literal["exact", "contains"] = "exact"
    rules: RuleSet = Field(default_factory=RuleSet)

    @field_validator("query")
    @classmethod
    def _norm(cls, v: str) -> str:
        return _not_blank(normalise_query(v), "the query")

    def applies(self, normalised: str) -> bool:
        if self.match == "exact":
            return normalised == self.query
        return re.search(rf"(?<!\w){re.escape(self.query)}(?!\w)", normalised) is not None


@dataclass
class Rewritten:
    text: str  # what to run: the query without stop words
    expansions: list[str] = field(default_factory=list)  # synonym terms to search as well
    dropped: list[str] = field(default_factory=list)  # stop words removed


@dataclass
class QueryDecision:
    redirect: str | None
    rules: RuleSet
    matched: list[str]  # which query rules / redirect held, for the answer's reasons


class SearchSettings(BaseModel):
    """One shop's search management document (stored versioned, like placements)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synonyms: list[Synonym] = Field(default_factory=list, max_length=5000)
    redirects: list[Redirect] = Field(default_factory=list, max_length=5000)
    stop_words: list[NAME] = Field(default_factory=list, max_length=1000)
    query_rules: list[QueryRule] = Field(default_factory=list, max_length=2000)

    @field_validator("stop_words")
    @classmethod
    def _stop(cls, v: list[str]) -> list[str]:
        return sorted({_not_blank(normalise_query(w), "a stop word") for w in v})

    @model_validator(mode="after")
    def _unique_redirects(self) -> SearchSettings:
        seen: dict[str, int] = {}
        for i, r in enumerate(self.redirects):
            if r.query in seen:
                raise ValueError(
                    f"redirects[{i}] repeats the query {r.query!r} of redirects[{seen[r.query]}]"
                )
            seen[r.query] = i
        return self

    @classmethod
    def parse(cls, data: object) -> SearchSettings:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RuleError.from_validation(exc) from None

    def check_items(self, known: Callable[[Iterable[str]], set[str]]) -> None:
        for i, rule in enumerate(self.query_rules):
            rule.rules.check_items(known, where=f"query_rules[{i}].rules.")

    def rewrite(self, text: str) -> Rewritten:
        q = normalise_query(text)
        words = q.split(" ") if q else []
        stop = set(self.stop_words)
        kept = [w for w in words if w not in stop]
        if not kept:  # a query of stop words only is run as typed
            kept = words
        dropped = [w for w in words if w in stop and w not in kept]
        out_text = " ".join(kept)
        expansions: list[str] = []
        for syn in self.synonyms:
            sources = syn.terms[:1] if syn.direction == "one-way" else syn.terms
            for term in sources:
                if _contains(out_text, term):
                    expansions.extend(t for t in syn.terms if t != term and t not in expansions)
        return Rewritten(out_text, expansions, dropped)

    def for_query(self, text: str) -> QueryDecision:
        q = normalise_query(text)
        redirect = next((r.url for r in self.redirects if r.query == q), None)
        matched = [f'redirect "{q}"'] if redirect else []
        rules: list[Rule] = []
        for rule in self.query_rules:
            if rule.applies(q):
                rules.extend(rule.rules.rules)
                matched.append(f'query rule "{rule.query}" ({rule.match})')
        # each query rule was validated on save; rules of several matching ones are combined unvalidated
        return QueryDecision(redirect, RuleSet.model_construct(rules=rules), matched)


def _contains(text: str, term: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text) is not None
