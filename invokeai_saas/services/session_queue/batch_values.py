"""Batch values are checked against their node's field before any item is stored.

Stock expands a batch by writing each ``data`` value straight into the graph's JSON (``create_session_nfv_tuples``):
the value never passes the node's own validation until the stored session is read back. A value the field refuses
(``width: -5`` where ``width`` must be positive, a string for an integer) is therefore stored, and from then on
every read of that row fails: in stock a queue list that answers 500. In a shared queue that is every tenant's
list, and the row cannot be fetched, canceled or deleted through the API on its own.

``check_batch_values`` validates every distinct value of every batch datum the way the stored session is read
back: the node as stock dumps it into the session (``exclude_none``), with the value substituted, through the
node's class in lax mode, after the same JSON round trip. A refusal raises ``InvalidBatchValues``, naming the node
and field of each bad value with pydantic's message; the route layer answers it with 422
(``invokeai_saas.routes.batch_value_errors``). Values are checked one field at a time: a node validator that
relates two batch fields is not evaluated for every combination (the reads tolerate such a row instead, see
``stored_items``).
"""

from __future__ import annotations

import json
from typing import Any

from invokeai.app.services.session_queue.session_queue_common import Batch
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

# Refusals reported per request: the first few say what is wrong; a batch of thousands of bad values need not
# produce thousands of lines.
MAX_REPORTED = 20


class InvalidBatchValues(ValueError):
    """Batch values their node fields refuse; ``errors`` in FastAPI's validation-error shape (``loc``, ``msg``,
    ``type``), ``loc`` pointing into the request body."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error["msg"]) for error in errors))


def _as_stored(value: Any) -> Any:
    """The value as it comes back out of the stored session's JSON."""
    return json.loads(json.dumps(value, default=to_jsonable_python))


def _first_message(error: ValidationError, field_name: str) -> tuple[str, str]:
    """pydantic's message (and error type) for the field, or the node's first one (a model-level refusal)."""
    details = error.errors(include_url=False, include_context=False, include_input=False)
    for detail in details:
        if detail["loc"] and detail["loc"][0] == field_name:
            return str(detail["msg"]), str(detail["type"])
    first = details[0] if details else {"msg": str(error), "type": "value_error"}
    return str(first["msg"]), str(first["type"])


def check_batch_values(batch: Batch) -> None:
    """Raise ``InvalidBatchValues`` if a ``data`` value would make a stored session unreadable."""
    if not batch.data:
        return
    errors: list[dict[str, Any]] = []
    nodes = batch.graph.model_dump(warnings=False, exclude_none=True)["nodes"]
    for group_index, group in enumerate(batch.data):
        for datum_index, datum in enumerate(group):
            node_class = type(batch.graph.get_node(datum.node_path))  # Batch's own validator checked it exists
            stored_node = _as_stored(nodes[datum.node_path])
            seen: set[str] = set()
            for item_index, item in enumerate(datum.items):
                value = _as_stored(item)
                key = json.dumps(value, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    node_class.model_validate({**stored_node, datum.field_name: value})
                except ValidationError as e:
                    message, kind = _first_message(e, datum.field_name)
                    errors.append(
                        {
                            "loc": ["body", "batch", "data", group_index, datum_index, "items", item_index],
                            "msg": f"Node '{datum.node_path}' field '{datum.field_name}': {message}",
                            "type": kind,
                        }
                    )
                    if len(errors) >= MAX_REPORTED:
                        raise InvalidBatchValues(errors) from None
    if errors:
        raise InvalidBatchValues(errors)
