"""Named placements: where on the shop a list is shown, what fills it and which rules shape it.

The eight standard placements exist from the start (with no rules); a shop may save its own under
other names. Each says its ``source`` (a recommender or a search retriever), the model (``"active"``:
whatever the registry serves), the candidate pool's filters, and its ``RuleSet``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from shelfwise.core.errors import NotFoundError
from shelfwise.merchandising.rules import NUMBER, Float, Int, RuleError, RuleSet

STANDARD: Final[dict[str, dict[str, Any]]] = {
    "home": {"source": "personal", "description": "home page: for you, else popular"},
    "product": {"source": "similar", "description": "product page: items like this one"},
    "cart": {"source": "bought_together", "description": "cart: bought with what is in it"},
    "search": {"source": "search", "retriever": "hybrid", "description": "search results"},
    "category": {"source": "popular", "description": "category page: popular in the category"},
    "email": {"source": "personal", "k": 6, "description": "marketing e-mail: for you"},
    "store": {"source": "popular", "description": "a shop-within-the-shop: a brand's or a category's store"},
    "promotion": {"source": "popular", "description": "a campaign page; promotion rules decide what shows"},
}
NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,63}$"
Source = Literal["personal", "similar", "bought_together", "popular", "trending", "search"]


class PlacementNotFound(NotFoundError):
    """No placement of that name (nor that version)."""


class CandidateFilters(BaseModel):
    """What may enter the candidate pool, before rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: list[str] | None = Field(None, description="category path prefixes")
    brands: list[str] | None = None
    # the bound inside the Optional: on ``Float | None`` pydantic enforces it but documents a bare
    # ``ge`` keyword JSON Schema ignores (schemathesis found the disagreement)
    price_min: Annotated[float, Field(ge=0), NUMBER] | None = None
    price_max: Annotated[float, Field(ge=0), NUMBER] | None = None
    available_only: Annotated[bool, Strict()] = True  # not 1 or "yes": JSON Schema says boolean
    attributes: dict[str, list[str]] = Field(default_factory=dict, description="e.g. {'colour': ['red']}")

    @model_validator(mode="after")
    def _range(self) -> CandidateFilters:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min ({self.price_min:g}) is above price_max ({self.price_max:g})")
        return self


class Exploration(BaseModel):
    """An exploration slot (opt-in per placement): one position of the list is filled by a bandit
    over the items at and below it, and the chance of what it showed is logged with the impression
    (``recommend.exploration``), so a candidate policy can be evaluated off-policy from the logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["epsilon_greedy", "thompson"] = Field(
        "epsilon_greedy",
        description="epsilon_greedy: a uniform pick with chance epsilon; thompson: Beta posteriors",
    )
    slot: Int = Field(3, ge=1, le=200, description="the position (1-based) the bandit fills")
    epsilon: Float = Field(0.1, ge=0, le=1, description="epsilon_greedy: the chance of a random pick")
    pool: Int = Field(5, ge=2, le=50, description="how many items, from the slot down, it picks from")


class Placement(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        # what ``_pool`` refuses that JSON Schema can say: a retriever only for source "search", an
        # exploration slot never for it (k, candidates and slot against each other it cannot)
        json_schema_extra={
            "allOf": [
                {
                    "anyOf": [
                        {"properties": {"retriever": {"type": "null"}}},
                        {"required": ["source"], "properties": {"source": {"const": "search"}}},
                    ]
                },
                {
                    "anyOf": [
                        {"properties": {"exploration": {"type": "null"}}},
                        {"properties": {"source": {"not": {"const": "search"}}}},
                    ]
                },
            ]
        },
    )

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=500)
    source: Source = "personal"
    model: str = Field("active", min_length=1, max_length=128, description="a registry version, or 'active'")
    retriever: Literal["keyword", "dense", "hybrid"] | None = Field(None, description="for source='search'")
    k: Int = Field(10, ge=1, le=200)
    candidates: Int = Field(100, ge=1, le=5000, description="pool size the rules choose from")
    filters: CandidateFilters = Field(default_factory=CandidateFilters)
    rules: RuleSet = Field(default_factory=RuleSet)
    exploration: Exploration | None = Field(None, description="an exploration slot; none unless set")

    @model_validator(mode="after")
    def _pool(self) -> Placement:
        if self.candidates < self.k:
            raise ValueError(f"candidates ({self.candidates}) must be at least k ({self.k})")
        if self.exploration is not None and self.exploration.slot > self.k:
            raise ValueError(f"exploration slot ({self.exploration.slot}) is beyond k ({self.k})")
        if self.exploration is not None and self.source == "search":
            raise ValueError("exploration is for recommendation placements, not source 'search'")
        if self.retriever is not None and self.source != "search":
            raise ValueError(f"retriever is for source 'search', not {self.source!r}")
        return self

    @classmethod
    def parse(cls, data: object) -> Placement:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RuleError.from_validation(exc) from None


def default_placement(name: str) -> Placement:
    """The standard placement ``name`` as it is before a shop saves one; PlacementNotFound otherwise."""
    if name not in STANDARD:
        raise PlacementNotFound(
            f"no placement {name!r}",
            hint=f"standard ones: {', '.join(STANDARD)}; or save one under this name",
        )
    return Placement(name=name, **STANDARD[name])
