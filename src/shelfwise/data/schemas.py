"""The records shelfwise stores: events, items, users.

Times are integer milliseconds since the epoch, UTC. User ids are always pseudonyms
(see ``shelfwise.data.privacy``); item ids are the shop's own ids, as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# Column names, once.
EVENT_ID: Final = "event_id"
USER_ID: Final = "user_id"
SESSION_ID: Final = "session_id"
ITEM_ID: Final = "item_id"
EVENT_TYPE: Final = "type"
TS: Final = "ts"
QUANTITY: Final = "quantity"
PRICE: Final = "price"
CURRENCY: Final = "currency"
VALUE: Final = "value"
CONTEXT: Final = "context"
SOURCE: Final = "source"

EVENT_COLUMNS: Final = (
    EVENT_ID,
    USER_ID,
    SESSION_ID,
    ITEM_ID,
    EVENT_TYPE,
    TS,
    QUANTITY,
    PRICE,
    CURRENCY,
    VALUE,
    CONTEXT,
    SOURCE,
)
ITEM_COLUMNS: Final = (
    "item_id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "currency",
    "attributes",
    "available",
    "updated_ts",
    "source",
)

ID_MAX = 256


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    CART = "cart"
    REMOVE_FROM_CART = "remove_from_cart"
    WISHLIST = "wishlist"
    PURCHASE = "purchase"
    RETURN = "return"
    SEARCH = "search"
    RATE = "rate"
    LOGIN = "login"


# Names other systems use for the same thing (Taobao, OTTO, GA4, Segment…).
EVENT_TYPE_ALIASES: Final[dict[str, EventType]] = {
    "pv": EventType.VIEW,
    "page_view": EventType.VIEW,
    "pageview": EventType.VIEW,
    "view_item": EventType.VIEW,
    "product_viewed": EventType.VIEW,
    "detail": EventType.VIEW,
    "clicks": EventType.CLICK,
    "select_item": EventType.CLICK,
    "carts": EventType.CART,
    "add_to_cart": EventType.CART,
    "addtocart": EventType.CART,
    "product_added": EventType.CART,
    "remove_from_cart": EventType.REMOVE_FROM_CART,
    "removefromcart": EventType.REMOVE_FROM_CART,
    "product_removed": EventType.REMOVE_FROM_CART,
    "fav": EventType.WISHLIST,
    "add_to_wishlist": EventType.WISHLIST,
    "buy": EventType.PURCHASE,
    "orders": EventType.PURCHASE,
    "order": EventType.PURCHASE,
    "transaction": EventType.PURCHASE,
    "order_completed": EventType.PURCHASE,
    "refund": EventType.RETURN,
    "cancel": EventType.RETURN,
    "cancellation": EventType.RETURN,
    "rating": EventType.RATE,
    "review": EventType.RATE,
    "signin": EventType.LOGIN,
    "sign_in": EventType.LOGIN,
}

# Types whose item is a product (the rest, such as search and login, may have none).
ITEM_EVENT_TYPES: Final = frozenset(
    {
        EventType.VIEW,
        EventType.CLICK,
        EventType.CART,
        EventType.REMOVE_FROM_CART,
        EventType.WISHLIST,
        EventType.PURCHASE,
        EventType.RETURN,
        EventType.RATE,
    }
)
MONEY_EVENT_TYPES: Final = frozenset({EventType.PURCHASE, EventType.RETURN})


_TYPE_NAMES: Final[dict[str, EventType]] = {**{t.value: t for t in EventType}, **EVENT_TYPE_ALIASES}
EVENT_TYPE_NAMES: Final = tuple(sorted(_TYPE_NAMES))  # every exact spelling ``parse_event_type`` knows


def parse_event_type(raw: str) -> EventType | None:
    """The ``EventType`` for a name or a common alias (``pv``, ``add_to_cart``, ``orders``…), else None."""
    found = _TYPE_NAMES.get(raw)
    if found is None:
        found = _TYPE_NAMES.get(raw.strip().lower().replace("-", "_").replace(" ", "_"))
    return found


@dataclass(slots=True, kw_only=True)
class Event:
    """One thing a shopper did. ``event_id`` is the idempotency key: the same id is stored once.

    A plain dataclass (treat it as immutable) so ingest builds hundreds of thousands a second;
    untrusted input is validated with ``validate_event(dict)``, which enforces every constraint below.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=ID_MAX)]
    type: EventType
    ts: Annotated[int, Field(description="ms since epoch, UTC")]
    user_id: Annotated[str | None, Field(max_length=ID_MAX, description="pseudonym; None for a guest")] = None
    session_id: Annotated[str | None, Field(max_length=ID_MAX)] = None
    item_id: Annotated[str | None, Field(min_length=1, max_length=ID_MAX)] = None
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    price: Annotated[float | None, Field(ge=0, le=1e9, allow_inf_nan=False, description="unit price")] = None
    currency: Annotated[str | None, Field(pattern=r"^[A-Z]{3}$")] = None
    value: Annotated[float | None, Field(allow_inf_nan=False, description="rating or other number")] = None
    context: dict[str, Any] = field(default_factory=dict)  # query, page, country, device…
    source: Annotated[str, Field(max_length=64)] = "api"

    def __post_init__(self) -> None:
        if self.item_id is None and self.type in ITEM_EVENT_TYPES:
            raise ValueError(f"a {self.type} event needs an item_id")


@dataclass(slots=True, kw_only=True)
class Item:
    """A product in the catalogue. ``category`` is a path, root first, joined by `` > ``."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    item_id: Annotated[str, Field(min_length=1, max_length=ID_MAX)]
    title: str | None = None
    description: str | None = None
    category: str | None = None
    brand: str | None = None
    price: Annotated[float | None, Field(ge=0, le=1e9, allow_inf_nan=False)] = None
    currency: Annotated[str | None, Field(pattern=r"^[A-Z]{3}$")] = None
    attributes: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    updated_ts: int | None = None
    source: Annotated[str, Field(max_length=64)] = "api"


_EVENT = TypeAdapter(Event)
_ITEM = TypeAdapter(Item)


def validate_event(data: Any) -> Event:
    """An ``Event`` from untrusted data; raises pydantic's ``ValidationError`` naming each bad field."""
    return _EVENT.validate_python(data)


def validate_item(data: Any) -> Item:
    return _ITEM.validate_python(data)


class User(BaseModel):
    """What the store knows of a shopper: only a pseudonym and activity, never the raw id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str = Field(min_length=1, max_length=ID_MAX)
    first_seen: int
    last_seen: int
    n_events: int = Field(0, ge=0)
    suspected_bot: bool = False
    bot_reason: str | None = None


class Query(BaseModel):
    """A search query from a query log or a labelled set (WANDS, Crowdflower)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query_id: str
    text: str
    query_class: str | None = None
