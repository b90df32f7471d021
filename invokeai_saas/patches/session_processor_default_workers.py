"""Upstream: ``invokeai.app.services.session_processor.session_processor_default.DefaultSessionProcessor._workers``
and ``DefaultSessionProcessor._process``. Checked on 6.14.2: ``start()`` builds one ``_SessionWorker`` per
generation device (``device``, ``runner``, ``cancel_event``, ``queue_item``, ``thread``) and runs
``_process(worker=, stop_event=, poll_now_event=, resume_event=)`` on a daemon thread for each; ``stop()`` sets
``_stop_event``. An exception that escapes ``_process``'s own error handler (its failure write failing too, as in
a database outage) ends the thread for good, and nothing in stock notices.

The worker process needs three things stock has no public method for: stop one item in this process only (the
item's status already says it stopped, or this worker no longer holds it), see that a processing thread died,
and start it again. Reading ``_workers`` and starting ``_process`` on a new thread with the same events is exactly
what ``start()`` does for each device, so a restarted thread behaves as the first one did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeadThread:
    """A processing thread that ended while the processor was running: which device slot, which thread."""

    index: int
    name: str
    ident: int | None


def _session_workers(processor: Any) -> list[Any]:
    return list(getattr(processor, "_workers", []))


def cancel_item(processor: Any, item_id: int) -> bool:
    """Set the cancel event of the thread running ``item_id`` (the runner stops at its next check; nothing is
    written about the item). Returns whether a thread was running it."""
    found = False
    for worker in _session_workers(processor):
        queue_item = worker.queue_item  # bound once: the thread clears it between items
        if queue_item is not None and queue_item.item_id == item_id:
            worker.cancel_event.set()
            found = True
    return found


def dead_threads(processor: Any) -> list[DeadThread]:
    """Processing threads that are no longer alive although the processor was not stopped."""
    stop_event = getattr(processor, "_stop_event", None)
    if stop_event is None or stop_event.is_set():
        return []
    dead = []
    for index, worker in enumerate(_session_workers(processor)):
        thread = worker.thread
        if thread is not None and not thread.is_alive():
            dead.append(DeadThread(index, thread.name, thread.ident))
    return dead


def restart_thread(processor: Any, index: int) -> threading.Thread:
    """Run ``_process`` again for the ``index``-th device, on a new thread, as ``start()`` does."""
    worker = _session_workers(processor)[index]
    thread = threading.Thread(
        name=f"session_processor_{index}",
        target=processor._process,
        daemon=True,
        kwargs={
            "worker": worker,
            "stop_event": processor._stop_event,
            "poll_now_event": processor._poll_now_event,
            "resume_event": processor._resume_event,
        },
    )
    worker.thread = thread
    thread.start()
    return thread
