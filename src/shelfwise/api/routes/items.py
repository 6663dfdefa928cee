"""The catalogue through the API: items written here reach this worker's search and models at once
and the other workers through the catalogue log (``serving.catalogue``)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from shelfwise.api.auth import Write
from shelfwise.api.openapi import invalid
from shelfwise.api.routes.deps import (
    ERRORS,
    ItemId,
    Svc,
)
from shelfwise.api.schemas import (
    ErrorOut,
    ItemDeleted,
    ItemIn,
    ItemOut,
)
from shelfwise.core.clock import now_ms
from shelfwise.data.schemas import Item, validate_item

router = APIRouter()


def _item_out(item: Item) -> ItemOut:
    return ItemOut(
        item_id=item.item_id,
        title=item.title,
        description=item.description,
        category=item.category,
        brand=item.brand,
        price=item.price,
        currency=item.currency,
        attributes=item.attributes,
        available=item.available,
    )


@router.put(
    "/v1/items/{item_id}", response_model=ItemOut, responses=ERRORS, dependencies=[Write], tags=["items"]
)
def put_item(svc: Svc, item_id: ItemId, body: ItemIn) -> ItemOut:
    """Create or replace an item; searchable and (un)available to recommendations at once."""
    try:
        item = validate_item(
            {**body.model_dump(), "item_id": item_id, "updated_ts": now_ms(), "source": "api"}
        )
    except ValueError as exc:
        raise HTTPException(422, detail=invalid("body", str(exc))) from None
    svc.store.upsert_items([item], replace=True)
    warning = svc.catalogue.note([item])  # here at once, in the other workers at their next watch
    out = _item_out(item)
    out.warnings = [warning] if warning else []
    return out


@router.get(
    "/v1/items/{item_id}", response_model=ItemOut, responses={404: {"model": ErrorOut}}, tags=["items"]
)
def get_item(svc: Svc, item_id: ItemId) -> ItemOut:
    found = svc.store.get_items([item_id]).get(item_id)
    if found is None:
        raise HTTPException(404, detail={"error": "unknown_item", "detail": f"no item {item_id!r}"})
    return _item_out(found)


@router.delete(
    "/v1/items/{item_id}",
    response_model=ItemDeleted,
    responses={**ERRORS, 404: {"model": ErrorOut}},
    dependencies=[Write],
    tags=["items"],
)
def delete_item(svc: Svc, item_id: ItemId) -> ItemDeleted:
    """Take an item out of search and recommendations. The store keeps it, marked unavailable,
    because past events refer to it."""
    found = svc.store.get_items([item_id]).get(item_id)
    if found is None:
        raise HTTPException(404, detail={"error": "unknown_item", "detail": f"no item {item_id!r}"})
    found.available = False
    svc.store.upsert_items([found], replace=True)
    with svc.search_lock:
        removed = svc.search.get(item_id) is not None
    warning = svc.catalogue.note([found], removed=[item_id])
    return ItemDeleted(
        item_id=item_id,
        removed_from_search=removed,
        marked_unavailable=True,
        warnings=[warning] if warning else [],
    )
