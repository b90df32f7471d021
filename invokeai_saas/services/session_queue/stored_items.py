"""Reading stored queue rows so that one unreadable row never breaks a read for everybody.

A queue row keeps its session, field values and workflow as JSON that is validated only when it is read. Stock
parses every row of a list in one go, so a single row that no longer parses answers the whole list with a 500:
a batch value its node refused (stored before ``batch_values`` checked them), a node type whose node pack the
operator removed, a field a newer InvokeAI renamed. In a shared queue that is every tenant's list.

Here a row whose JSON fails to parse is read as a placeholder item: its own identity, status, owner and times from
the columns (which the database typed), an empty session, no field values or workflow, and ``error_type`` /
``error_message`` saying the stored data cannot be read. Listed, fetched, canceled and deleted like any item, it
keeps its real status (counts and lists agree), and it is never run: a claim fails it instead
(``unreadable_reason`` in the claim, see ``PostgresSessionQueue._claim_row``), and a retry skips it (there is no
graph to run again). The reason given to its owner is pydantic's location and message, never the stored JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from invokeai.app.services.session_queue.session_queue_common import (
    SessionQueueItem,
    SessionQueueItemSummary,
    get_field_values,
    get_session,
    get_workflow,
)
from invokeai.app.services.shared.graph import Graph, GraphExecutionState
from pydantic import ValidationError

logger = logging.getLogger("invokeai_saas.session_queue")

UNREADABLE_ERROR_TYPE = "UnreadableQueueItem"
UNREADABLE_MESSAGE = "This queue item's stored data can no longer be read, so it cannot run"
_REASON_CHARS = 300  # of pydantic's first error: location and message only


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        details = error.errors(include_url=False, include_context=False, include_input=False)
        if details:
            location = ".".join(str(part) for part in details[0]["loc"])
            return f"{location}: {details[0]['msg']}"[:_REASON_CHARS]
    return type(error).__name__


def _parse(values: dict[str, Any]) -> dict[str, Any]:
    """The stored JSON columns parsed as stock parses them (``SessionQueueItem.queue_item_from_dict``)."""
    return {
        "field_values": get_field_values(values),
        "session": get_session(values),
        "workflow": get_workflow(values),
    }


def unreadable_reason(values: dict[str, Any]) -> str | None:
    """None when the row parses; else why not (for the error message of a claim that fails it)."""
    try:
        SessionQueueItem(**{**values, **_parse(values)})
    except (ValueError, TypeError) as e:  # pydantic's ValidationError is a ValueError
        return _reason(e)
    return None


def is_unreadable(item: SessionQueueItem) -> bool:
    return item.error_type == UNREADABLE_ERROR_TYPE


def item_from_values(values: dict[str, Any]) -> SessionQueueItem:
    """``SessionQueueItem.queue_item_from_dict(values)``, or the placeholder when the stored JSON does not parse."""
    try:
        return SessionQueueItem(**{**values, **_parse(values)})
    except (ValueError, TypeError) as e:
        reason = _reason(e)
    logger.debug(f"Queue item {values.get('item_id')} is unreadable: {reason}")
    return SessionQueueItem(
        **{
            **values,
            "field_values": None,
            "workflow": None,
            "session": GraphExecutionState(id=str(values.get("session_id") or "unreadable"), graph=Graph()),
            "error_type": UNREADABLE_ERROR_TYPE,
            "error_message": f"{UNREADABLE_MESSAGE} ({reason})",
            "error_traceback": None,
        }
    )


def summary_from_values(values: dict[str, Any]) -> SessionQueueItemSummary:
    """``SessionQueueItemSummary.queue_item_summary_from_dict(values)``, without the field values when those do not
    parse (the only stored JSON a summary reads)."""
    try:
        field_values = get_field_values(values)
    except (ValueError, TypeError):
        field_values = None
    return SessionQueueItemSummary(**{**values, "field_values": field_values})
