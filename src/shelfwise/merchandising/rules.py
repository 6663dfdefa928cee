"""Merchandising rules as data: pydantic models that round-trip to JSON, with validation that names
the rule and the field at fault.

A placement's ``RuleSet`` holds any of: ``pin`` (an item at a position), ``boost`` / ``bury`` (items
whose attribute has a value move up or down), ``block`` (items, brands or categories never shown),
``promotion`` (a pin or boost that holds only between ``start`` and ``end``), ``cap`` (at most N items
of a category) and ``diversity`` (the knob: MMR or calibrated category shares).

>>> rules = RuleSet.model_validate({"rules": [{"kind": "pin", "item_id": "85123A", "position": 1}]})
>>> rules.rules[0].label
'pin 85123A at 1'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shelfwise.core.errors import ShelfwiseError

NAME = Annotated[str, Field(min_length=1, max_length=128)]


def _number_only(value: object) -> object:
    # bodies arrive parsed from JSON and are validated in Python mode, which would read true as 1 and
    # "5" as 5; the document (JSON Schema) says a number, so those are refused as they are in JSON
    if isinstance(value, bool | str):
        raise PydanticCustomError(
            "number_type", "Input should be a number, not {kind}", {"kind": type(value).__name__}
        )
    return value


NUMBER = BeforeValidator(_number_only)


def _time_only(value: object) -> object:
    # the same for a time: the document says an ISO 8601 date-time text, not a number of seconds
    if not isinstance(value, str | dt.datetime):
        raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 date-time text")
    return value


Time = Annotated[dt.datetime, BeforeValidator(_time_only)]
Int = Annotated[int, NUMBER]
Float = Annotated[float, NUMBER]


def _some(*fields: str) -> dict[str, Any]:
    """JSON Schema for "at least one of ``fields`` is a non-empty list" (what a validator below
    refuses otherwise), so the OpenAPI document states it too."""
    return {"anyOf": [{"required": [f], "properties": {f: {"type": "array", "minItems": 1}}} for f in fields]}


class RuleError(ShelfwiseError):
    """A rule set a shop sent is not valid: the message names the rule (``rules[i]``) and field."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field

    @classmethod
    def from_validation(cls, exc: ValidationError, *, prefix: str = "") -> RuleError:
        first = exc.errors()[0]
        where = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p)
            for p in first["loc"]
            if not (isinstance(p, str) and p in _KINDS)  # the discriminator tag pydantic adds to the path
        ).replace(".[", "[")
        field = f"{prefix}{where}" if where else prefix.rstrip(".") or None
        extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return cls(f"{field}: {first['msg']}{extra}", field=field)


def _tagged(schema: dict[str, Any], cls: type) -> None:
    """A rule's JSON schema: ``kind`` is required (the union is told apart by it: a rule without one is
    refused), plus what the rule's ``also_in_schema`` says of its validators."""
    schema["required"] = ["kind", *schema.get("required", [])]
    schema.update(getattr(cls, "also_in_schema", {}))


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_tagged)
    also_in_schema: ClassVar[dict[str, Any]] = {}

    name: NAME | None = Field(None, description="shown in reasons; a default is made from the rule")

    @property
    def label(self) -> str:
        return self.name or self._default_label()

    def _default_label(self) -> str:  # pragma: no cover - each rule says its own
        raise NotImplementedError


class Pin(_Rule):
    kind: Literal["pin"] = "pin"
    item_id: NAME
    position: Int = Field(ge=1, le=1000, description="1 is the first slot")

    def _default_label(self) -> str:
        return f"pin {self.item_id} at {self.position}"


class _Match(_Rule):
    attribute: NAME = Field(description="category (a path prefix), brand, or an item attribute: colour…")
    value: NAME

    @field_validator("attribute", "value")
    @classmethod
    def _lower(cls, v: str) -> str:
        out = v.strip().lower()
        if not out:  # stored as "", it would be refused when read back
            raise ValueError("is blank (spaces only)")
        return out


class Boost(_Match):
    kind: Literal["boost"] = "boost"
    weight: Float = Field(0.2, gt=0, le=10, description="added to the item's rank score (0-1 over the list)")

    def _default_label(self) -> str:
        return f"boost {self.attribute}={self.value}"


class Bury(_Match):
    kind: Literal["bury"] = "bury"
    weight: Float = Field(0.2, gt=0, le=10, description="taken from the item's rank score")

    def _default_label(self) -> str:
        return f"bury {self.attribute}={self.value}"


class Block(_Rule):
    also_in_schema = _some("item_ids", "brands", "categories")

    kind: Literal["block"] = "block"
    item_ids: list[NAME] = Field(default_factory=list)
    brands: list[NAME] = Field(default_factory=list)
    categories: list[NAME] = Field(default_factory=list, description="category path prefixes")

    @model_validator(mode="after")
    def _something(self) -> Block:
        if not (self.item_ids or self.brands or self.categories):
            raise ValueError("a block rule needs item_ids, brands or categories")
        return self

    def _default_label(self) -> str:
        parts = [*(f"item {i}" for i in self.item_ids), *(f"brand {b}" for b in self.brands)]
        parts += [f"category {c}" for c in self.categories]
        return "block " + ", ".join(parts[:3]) + (" …" if len(parts) > 3 else "")


class Promotion(_Rule):
    """A pin (``position``) or a boost (``weight``) of ``item_ids`` or of ``attribute=value`` items,
    live in ``[start, end)``."""

    also_in_schema = {
        "allOf": [
            {
                "anyOf": [
                    {
                        "required": ["item_ids"],
                        "properties": {"item_ids": {"type": "array", "minItems": 1}},
                    },
                    {
                        "required": ["attribute", "value"],
                        "properties": {"attribute": {"type": "string"}, "value": {"type": "string"}},
                    },
                ]
            },
            {"anyOf": [{"properties": {"position": {"type": "null"}}}, _some("item_ids")]},
        ]
    }

    kind: Literal["promotion"] = "promotion"
    name: NAME  # a promotion is always named: reasons and overlaps cite it
    start: Time
    end: Time
    item_ids: list[NAME] = Field(default_factory=list)
    attribute: NAME | None = None
    value: NAME | None = None
    position: Annotated[int, Field(ge=1, le=1000), NUMBER] | None = Field(
        None, description="pin the first promoted item here"
    )  # the bound inside the Optional, so the document states it (see CandidateFilters.price_min)
    weight: Float = Field(0.3, gt=0, le=10)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)

    @model_validator(mode="after")
    def _window(self) -> Promotion:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
        if not self.item_ids and not (self.attribute and self.value):
            raise ValueError("a promotion needs item_ids or attribute and value")
        if self.position is not None and not self.item_ids:
            raise ValueError("a promotion with a position pins items: give item_ids")
        return self

    def live(self, now: dt.datetime) -> bool:
        return self.start <= now < self.end

    def _default_label(self) -> str:
        return self.name


class CategoryCap(_Rule):
    kind: Literal["cap"] = "cap"
    max_items: Int = Field(ge=1, le=1000)
    category: NAME | None = Field(None, description="a path prefix; None caps every category")

    def _default_label(self) -> str:
        return f"cap {self.category or 'each category'} at {self.max_items}"


class Diversity(_Rule):
    kind: Literal["diversity"] = "diversity"
    method: Literal["mmr", "calibrated"] = "mmr"
    strength: Float = Field(0.3, ge=0, le=1, description="0 keeps the model's order; 1 is diversity only")
    attribute: NAME = Field("category", description="what counts as 'the same kind' of item")

    def _default_label(self) -> str:
        return f"diversity {self.method} {self.strength:g}"


Rule = Annotated[
    Pin | Boost | Bury | Block | Promotion | CategoryCap | Diversity, Field(discriminator="kind")
]
_KINDS = frozenset({"pin", "boost", "bury", "block", "promotion", "cap", "diversity"})


class RuleSet(BaseModel):
    """The rules of one placement (or of one query), applied in a fixed order: block, boost/bury
    and live promotions' boosts, diversity, caps, then pins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(
        default_factory=list,
        max_length=500,
        # one diversity rule at most; pins at distinct positions and promotions that do not overlap
        # are refused otherwise too, but JSON Schema cannot say so
        json_schema_extra={
            "contains": {"properties": {"kind": {"const": "diversity"}}},
            "minContains": 0,
            "maxContains": 1,
        },
    )

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        pins: dict[int, str] = {}
        for i, rule in enumerate(self.rules):
            if isinstance(rule, Pin):
                if rule.position in pins:
                    raise ValueError(
                        f"rules[{i}] pins {rule.item_id} at position {rule.position}, "
                        f"which rule {pins[rule.position]!r} already pins"
                    )
                pins[rule.position] = rule.label
        if sum(isinstance(r, Diversity) for r in self.rules) > 1:
            raise ValueError("only one diversity rule per rule set")
        overlap = overlapping_promotions(self.rules)
        if overlap:
            raise ValueError(overlap)
        return self

    @classmethod
    def parse(cls, data: object, *, where: str = "") -> RuleSet:
        """Validate untrusted data; a ``RuleError`` naming ``rules[i].field`` when it is wrong."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RuleError.from_validation(exc, prefix=where) from None

    def item_ids(self) -> set[str]:
        out: set[str] = set()
        for rule in self.rules:
            if isinstance(rule, Pin):
                out.add(rule.item_id)
            elif isinstance(rule, Block | Promotion):
                out.update(rule.item_ids)
        return out

    def check_items(self, known: Callable[[Iterable[str]], set[str]], *, where: str = "") -> None:
        """Refuse a rule that names an item the catalogue lacks. ``known(ids)`` returns those it has."""
        wanted = self.item_ids()
        missing = wanted - known(wanted)
        if not missing:
            return
        for i, rule in enumerate(self.rules):
            ids = [rule.item_id] if isinstance(rule, Pin) else list(getattr(rule, "item_ids", []))
            for j, item_id in enumerate(ids):
                if item_id in missing:
                    field = (
                        f"{where}rules[{i}].item_id"
                        if isinstance(rule, Pin)
                        else f"{where}rules[{i}].item_ids[{j}]"
                    )
                    raise RuleError(
                        f"{field}: no item {item_id!r} in the catalogue",
                        field=field,
                        hint="ingest the item first, or fix the id",
                    )


def _targets(p: Promotion) -> set[str]:
    out = {f"item:{i}" for i in p.item_ids}
    if p.attribute and p.value:
        out.add(f"{p.attribute}:{p.value}")
    if p.position is not None:
        out.add(f"position:{p.position}")
    return out


def overlapping_promotions(rules: Iterable[object]) -> str | None:
    """A message when two promotions are live at the same time for the same items, attribute value or
    pinned slot (which would win is undefined: the shop must choose), else None."""
    promos = [(i, r) for i, r in enumerate(rules) if isinstance(r, Promotion)]
    for a in range(len(promos)):
        for b in range(a + 1, len(promos)):
            (i, p), (j, q) = promos[a], promos[b]
            if p.start < q.end and q.start < p.end:
                shared = _targets(p) & _targets(q)
                if shared:
                    what = sorted(shared)[0].replace(":", " ", 1)
                    return (
                        f"rules[{j}] promotion {q.name!r} ({q.start:%Y-%m-%d %H:%M}–{q.end:%Y-%m-%d %H:%M}) "
                        f"overlaps rules[{i}] promotion {p.name!r} ({p.start:%Y-%m-%d %H:%M}–"
                        f"{p.end:%Y-%m-%d %H:%M}) on {what}: change one window or its items"
                    )
    return None
