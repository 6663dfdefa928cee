"""Request and response bodies: one pydantic model per purpose, so the OpenAPI schema is exact."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from shelfwise.data.normalize import ISO_CURRENCIES
from shelfwise.data.schemas import _TYPE_NAMES, EVENT_TYPE_NAMES, ITEM_EVENT_TYPES, MONEY_EVENT_TYPES

Id = Field(min_length=1, max_length=256)
# every spelling the quality gate accepts (``parse_event_type``), so the document and the check agree
EventTypeName = Literal[EVENT_TYPE_NAMES]  # type: ignore[valid-type]
Scenario = Literal["home", "product", "cart", "category", "store", "promotion"]

# an id ingest keeps: something left after cleaning (NFKC, trimmed). Every character Python's
# strip() removes is listed (and the BOM), so the document's ECMAScript regex, pydantic's Rust regex
# and the cleaning agree on what "not blank" is.
NOT_BLANK = r"[^\t\n\v\f\r \x1c-\x1f\x85\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_ID = NOT_BLANK


def _json_int(value: Any) -> Any:
    """JSON Schema's integer includes 10.0; strict pydantic refuses it. A whole float becomes an int
    here; a bool, a string or a fraction still fails, as the document says."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_int)]
# bounds before the validator: after it, pydantic writes its own ``ge``/``le`` into the document,
# which no JSON Schema reader knows (schemathesis then sends -205 as a valid quantity)
Quantity = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(_json_int)]
TopK = Annotated[int, Field(ge=1, le=100), BeforeValidator(_json_int)]


class Strict(BaseModel):
    # strict: a JSON false is not a price, "3" is not a count (the schema says number, integer)
    model_config = ConfigDict(extra="forbid", strict=True)


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
    currency: str | None = None
    available: bool | None = None


class Skipped(BaseModel):
    stage: str
    cause: str


class ExplorationOut(BaseModel):
    policy: str = Field(description="epsilon_greedy or thompson")
    slot: int = Field(description="the position (1-based) the bandit filled")
    explored: bool = Field(description="it shows something other than the ranker's item there")
    propensity: float = Field(description="the chance of what the slot shows (logged with the impression)")


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
    placement: str | None = Field(None, description="the placement whose merchandising rules shaped the list")
    fallback: bool = Field(
        False, description="the placement's rules would have left no items: the list is shown without them"
    )
    notes: list[str] = Field(default_factory=list, description="what the rules could not do, and why")
    rec_id: str | None = Field(
        None,
        description="this answer's id: send it back with events about its items (rec_id, position) "
        "so they are credited to it (POST /v1/events)",
    )
    experiment: str | None = Field(None, description="the running experiment this answer belongs to")
    arm: str | None = Field(
        None,
        description="the experiment arm (its model version answered); `interleaved`: an interleaving "
        "experiment's team draft of its two arms' versions (`model_version` is the first arm's)",
    )
    exploration: ExplorationOut | None = Field(
        None,
        description="the placement's exploration slot, when it has one (its reason says when it explored)",
    )


class CartIn(Strict):
    items: list[str] = Field(min_length=1, max_length=200, description="item ids in the cart")
    user_id: str | None = Field(None, min_length=1, max_length=256)
    k: TopK = 10
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
    currency: str | None = None
    available: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict, description="product type, colour, size…")


class SearchOut(BaseModel):
    model_version: str = Field(description="the search index version that answered")
    mode: str = Field("bm25", description="how that version ranks: bm25, hybrid or ltr")
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
    redirect: str | None = Field(None, description="the shop redirects this query to this address")
    notes: list[str] = Field(
        default_factory=list,
        description="merchandising notes: query rules, pins not applied; and that only keyword "
        "search answers while the meaning index is built in the background",
    )
    fallback: bool = Field(False, description="the rules would have left no results: shown without them")
    synonyms: list[str] = Field(default_factory=list, description="the shop's synonyms searched as well")
    took_ms: float
    search_id: str | None = Field(
        None,
        description="this answer's id: send it back with events about its hits (search_id, position "
        "on this page) so they are credited to it (POST /v1/events)",
    )
    experiment: str | None = Field(None, description="the running search experiment this answer belongs to")
    arm: str | None = Field(None, description="the experiment arm (its index version and mode answered)")


class AutocompleteOut(BaseModel):
    model_version: str
    query: str
    suggestions: list[str]


# --- events ---------------------------------------------------------------------------------------


_ITEM_NAMES = tuple(n for n in EVENT_TYPE_NAMES if _TYPE_NAMES[n] in ITEM_EVENT_TYPES - MONEY_EVENT_TYPES)
_MONEY_NAMES = tuple(n for n in EVENT_TYPE_NAMES if _TYPE_NAMES[n] in MONEY_EVENT_TYPES)
_OTHER_NAMES = tuple(n for n in EVENT_TYPE_NAMES if _TYPE_NAMES[n] not in ITEM_EVENT_TYPES)
Currency = Literal[tuple(sorted(ISO_CURRENCIES))]  # type: ignore[valid-type]


class _EventFields(Strict):
    """What every event may carry. The schema says what the quality gate checks: a type it knows,
    an item for product events, a positive price for purchases and returns, a known currency, a time
    after ``shop_start`` (a time more than ``future_tolerance_seconds`` ahead is refused too)."""

    user_id: str | None = Field(
        None, min_length=1, max_length=256, pattern=_ID, description="the shop's user id"
    )
    event_id: str | None = Field(None, min_length=1, max_length=256, pattern=_ID)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    ts: JsonInt | str | None = Field(
        None,
        description="ms since epoch, UTC, or an ISO 8601 date-time; default: now.",
    )
    quantity: Quantity | None = None
    currency: Currency | None = Field(None, description="ISO 4217")
    value: float | None = Field(None, ge=-1e9, le=1e9)
    context: dict[str, Any] | None = None
    rec_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=_ID,
        description="the recommendation answer this event is about (its rec_id); credited to that "
        "answer's placement, model version and experiment arm when it was served to this shopper "
        "within the attribution window",
    )
    search_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=_ID, description="the search answer this event is about"
    )
    position: Annotated[int, Field(ge=1, le=1000), BeforeValidator(_json_int)] | None = Field(
        None,
        description="1-based position of the item in that answer (in search: on the page shown); "
        "default: where the event's item is in it",
    )


class ProductEventIn(_EventFields):
    """A shopper did something with a product: the item is required."""

    type: Literal[_ITEM_NAMES] = Field(description="view, click, cart… or an alias")  # type: ignore[valid-type]
    item_id: str = Field(min_length=1, max_length=256, pattern=_ID)
    price: float | None = Field(None, ge=0, le=1e9)


class MoneyEventIn(_EventFields):
    """A purchase or a return: the item is required, and a price, when given, is above 0."""

    type: Literal[_MONEY_NAMES] = Field(description="purchase, return or an alias")  # type: ignore[valid-type]
    item_id: str = Field(min_length=1, max_length=256, pattern=_ID)
    price: float | None = Field(None, gt=0, le=1e9)


class OtherEventIn(_EventFields):
    """Search, login: no product needed."""

    type: Literal[_OTHER_NAMES] = Field(description="search, login or an alias")  # type: ignore[valid-type]
    item_id: str | None = Field(None, min_length=1, max_length=256, pattern=_ID)
    price: float | None = Field(None, ge=0, le=1e9)


_BY_NAME: dict[str, type[BaseModel]] = {
    **dict.fromkeys(_ITEM_NAMES, ProductEventIn),
    **dict.fromkeys(_MONEY_NAMES, MoneyEventIn),
    **dict.fromkeys(_OTHER_NAMES, OtherEventIn),
}


class _AnyTypeIn(_EventFields):
    """Only to name the problem when the type is missing or unknown."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: EventTypeName


def _by_type(value: Any, _handler: ValidatorFunctionWrapHandler) -> Any:
    # the event's type says which of the three it is, so a 422 names that shape's fields only
    if isinstance(value, ProductEventIn | MoneyEventIn | OtherEventIn):
        return value
    kind = value.get("type") if isinstance(value, dict) else None
    # only a text can name a type: {"type": {}} or a list is the unknown-type shape's 422 (a dict
    # lookup with it raised TypeError: a 500)
    model = _BY_NAME.get(kind) if isinstance(kind, str) else None
    if model is None:
        model = _AnyTypeIn
    return model.model_validate(value)


EventIn = Annotated[ProductEventIn | MoneyEventIn | OtherEventIn, WrapValidator(_by_type)]


class EventBatchIn(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


def _one_shape(value: Any, _handler: ValidatorFunctionWrapHandler) -> Any:
    # The body says which shape it is (an object with ``events`` is a batch), so a 422 lists that
    # shape's errors only, located as ``body.events.1.price`` / ``body.price``, rather than the
    # errors of both union members.
    if isinstance(value, ProductEventIn | MoneyEventIn | OtherEventIn | EventBatchIn):
        return value
    if isinstance(value, dict) and "events" in value:
        return EventBatchIn.model_validate(value)
    return _by_type(value, _handler)


# One event, or a batch. The wrap validator keeps the ``anyOf`` of the shapes in the OpenAPI schema.
EventsBody = Annotated[ProductEventIn | MoneyEventIn | OtherEventIn | EventBatchIn, WrapValidator(_one_shape)]


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
    currency: Currency | None = Field(None, description="ISO 4217")
    # a list of short strings too, so an item read back (``attributes.annotated`` names the facts the
    # annotator supplied) can be written back unchanged
    attributes: dict[
        str,
        str
        | int
        | float
        | bool
        | Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=50)],
    ] = Field(default_factory=dict, max_length=100)
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
