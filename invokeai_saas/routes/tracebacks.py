"""No answer carries a stack trace: failed queue items keep their error type and message, not the traceback.

Stock stores a failed item's ``error_traceback`` (file paths and source lines of the server included) and hands it
to the item's owner: in the queue routes that return items, and in the ``invocation_error`` and
``queue_item_status_changed`` events. In a hosted service those are the server's internals shown to users; the
traceback is in the log of the process that ran the item (stock's runner logs it), where operators read it.

The session queue keeps storing it as stock does (the PostgreSQL queue stays at parity with stock's); it is taken
out where it would leave the server:

- the queue routes that return items get a filter (``invokeai_saas.patches.api_app_route_guards.RouteFilter``):
  list all, items by ids, current, next, get and cancel;
- events, at stock's in-process dispatch (``invokeai_saas.patches.events_fastapievents_tracebacks``), so every
  socket, on every API process, gets the event without it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Stock's session-queue routes (``invokeai/app/api/routers/session_queue.py``, prefix ``/v1/queue``) that return
# queue items.
QUEUE_ITEM_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/v1/queue/{queue_id}/list_all"),
    ("POST", "/v1/queue/{queue_id}/items_by_ids"),
    ("GET", "/v1/queue/{queue_id}/current"),
    ("GET", "/v1/queue/{queue_id}/next"),
    ("GET", "/v1/queue/{queue_id}/i/{item_id}"),
    ("PUT", "/v1/queue/{queue_id}/i/{item_id}/cancel"),
)


def without_traceback(value: Any) -> Any:
    """``value`` (a queue item, an event, a list of them, or anything else, returned as is) with every
    ``error_traceback`` emptied: None where the field is optional, "" where stock requires a string."""
    if isinstance(value, list):
        return [without_traceback(each) for each in value]
    if not isinstance(value, BaseModel) or not getattr(value, "error_traceback", None):
        return value
    field = type(value).model_fields.get("error_traceback")
    empty = "" if field is not None and field.is_required() else None
    return value.model_copy(update={"error_traceback": empty})


def queue_item_route_filters() -> list[Any]:
    """The route filters for ``QUEUE_ITEM_ROUTES``."""
    from invokeai_saas.patches.api_app_route_guards import RouteFilter

    return [RouteFilter(path, frozenset({method}), without_traceback) for method, path in QUEUE_ITEM_ROUTES]
