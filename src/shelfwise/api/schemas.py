"""Request and response bodies: one pydantic model per purpose, so the OpenAPI schema is exact."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, WrapValidator

from shelfwise.data.schemas import EVENT_TYPE_NAMES

Id = Field(min_length=1, max_length=256)
# every spelling the quality gate accepts (``parse_event_type``), so the document and the check agree
EventTypeName = Literal[EVENT_TYPE_NAMES]  # type: ignore[valid-type]
Scenario = Literal["home", "product", "cart", "category", "store", "promotion"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- recommendations ------------------------------------------------------------------------------


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str = Field(
        description="why this item: 'similar to X', 'bought together with Y', 'popular in Z'…"
    )
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None


class Skipped(BaseModel):
    stage: str
    cause: str


class RecommendationsOut(BaseModel):
    model_version: str = Field(description="the registry version that answered")
    source: str = Field(
        description="stage of the fallback chain that answered: personalised, session, bought_together, "
        "similar, popular_category or popular"
    )
    role: Literal["active", "canary", "shadow"] = "active"
    cached: bool = False
    user_id: str | None = None
    item_id: str | None = None
    scenario: str | None = None
    items: list[RecommendedItem]
    skipped: list[Skipped] = Field(default_factory=list, description="stages that failed or had nothing")


class CartIn(Strict):
    items: list[str] = Field(min_length=1, max_length=200, description="item ids in the cart")
    user_id: str | None = Field(None, min_length=1, max_length=256)
    k: int = Field(10, ge=1, le=100)
    category: str | None = Field(None, max_length=512)
    brand: str | None = Field(None, max_length=256)
    price_min: float | None = Field(None, ge=0, le=1e9)
    price_max: float | None = Field(None, ge=0, le=1e9)


# --- search ---------------------------------------------------------------------------------------


class SearchHitOut(BaseModel):
    item_id: str
    score: float
    reason: str
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    available: bool = True


class SearchOut(BaseModel):
    model_version: str = Field(description="the search index version that answered")
    query: str
    showing_results_for: str | None = Field(None, description="the corrected query, when spelling changed it")
    total: int
    page: int
    size: int
    hits: list[SearchHitOut]
    facets: dict[str, Any]
    filters: dict[str, Any]
    personalised: bool = False
    notice: str | None = Field(
        None, description="why the answer is not what was asked (e.g. not personalised)"
    )
    took_ms: float


class AutocompleteOut(BaseModel):
    model_version: str
    query: str
    suggestions: list[str]


# --- events ---------------------------------------------------------------------------------------


class EventIn(Strict):
    """One shopper event. ``event_id`` is the idempotency key (or send the ``Idempotency-Key`` header for
    a single event); without either, an id is derived from the event's content."""

    type: EventTypeName = Field(
        description="view, click, cart, remove_from_cart, wishlist, purchase, return, search, rate, login, "
        "or a common alias of one (pv, add_to_cart, order…)"
    )
    user_id: str | None = Field(None, min_length=1, max_length=256, description="the shop's user id")
    item_id: str | None = Field(None, min_length=1, max_length=256)
    event_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    ts: int | str | None = Field(None, description="ms since epoch or ISO 8601; default: now")
    quantity: int | None = Field(None, ge=1, le=1_000_000)
    price: float | None = Field(None, ge=0, le=1e9)
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")
    value: float | None = Field(None, ge=-1e9, le=1e9)
    context: dict[str, Any] | None = None


class EventBatchIn(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


def _one_shape(value: Any, _handler: ValidatorFunctionWrapHandler) -> EventIn | EventBatchIn:
    # The body says which shape it is (an object with ``events`` is a batch), so a 422 lists that
    # shape's errors only, located as ``body.events.1.price`` / ``body.price``, rather than the
    # errors of both union members.
    if isinstance(value, EventIn | EventBatchIn):
        return value
    if isinstance(value, dict) and "events" in value:
        return EventBatchIn.model_validate(value)
    return EventIn.model_validate(value)


# One event, or a batch. The wrap validator keeps the ``anyOf`` of both shapes in the OpenAPI schema.
EventsBody = Annotated[EventIn | EventBatchIn, WrapValidator(_one_shape)]


class EventRejection(BaseModel):
    index: int = Field(description="position of the event in the batch")
    field: str = Field(description="where the problem is, e.g. body.events.1.ts")
    reason: str = Field(description="why it was rejected: future_timestamp, missing_field…")
    message: str


class EventsAccepted(BaseModel):
    accepted: int = Field(description="events stored now")
    duplicates: int = Field(description="events whose id was already stored (idempotent retries)")
    event_ids: list[str]
    rejected: int = Field(0, description="events of the batch refused and quarantined with their reason")
    rejections: list[EventRejection] = Field(
        default_factory=list, description="each refused event: its index, field and reason, to fix and resend"
    )


# --- items ----------------------------------------------------------------------------------------


class ItemIn(Strict):
    title: str | None = Field(None, max_length=2000)
    description: str | None = Field(None, max_length=20_000)
    category: str | None = Field(None, max_length=512)
    brand: str | None = Field(None, max_length=256)
    price: float | None = Field(None, ge=0, le=1e9)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=100)
    available: bool = True


class ItemOut(BaseModel):
    item_id: str
    title: str | None = None
    description: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    currency: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    available: bool = True
    warnings: list[str] = Field(
        default_factory=list, description="the write is stored, but something after it did not happen"
    )


class ItemDeleted(BaseModel):
    item_id: str
    removed_from_search: bool
    marked_unavailable: bool
    warnings: list[str] = Field(
        default_factory=list, description="the write is stored, but something after it did not happen"
    )


# --- users and privacy ----------------------------------------------------------------------------


class PlaceChecked(BaseModel):
    place: str
    found: bool
    detail: str = ""
    checked: bool = Field(True, description="False: the place could not be checked (never counted as clean)")


class DeletionOut(BaseModel):
    user_id: str
    removed: dict[str, Any]
    seconds: float
    verified: bool = Field(
        description="True when every place was checked afterwards and none holds anything of the user"
    )
    places: list[PlaceChecked]
    failed: dict[str, str] = Field(
        default_factory=dict,
        description="places that could not be cleaned, with the error (retry the request)",
    )


class DeletionIncompleteOut(DeletionOut):
    """503: some places could not be cleaned (``failed``); the others were. Retrying is safe."""

    error: str = "deletion_incomplete"
    hint: str | None = None


# --- admin ----------------------------------------------------------------------------------------


class VersionOut(BaseModel):
    version: str
    model: str
    created_at: str
    active: bool
    loaded: bool
    metrics: dict[str, Any]
    data_window: dict[str, Any]
    evaluation: dict[str, Any]
    config: dict[str, Any]
    parent: str | None = None
    erasures: int = 0


class ModelsOut(BaseModel):
    active: str | None
    history: list[str]
    candidate: dict[str, Any] | None
    versions: list[VersionOut]


class ActivationOut(BaseModel):
    active: str | None
    previous: str | None
    seconds: float
    candidate: dict[str, Any] | None = None


class CandidateIn(Strict):
    mode: Literal["shadow", "canary"]
    percent: float = Field(
        0.0, ge=0, le=100, description="canary: share of users (by a stable hash of their id)"
    )


class ErrorOut(BaseModel):
    error: str
    detail: Any = None
    hint: str | None = None


class HealthOut(BaseModel):
    status: str
    model_version: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
