"""Watching stock's processing threads from the worker's beat, and bringing a dead one back.

Stock's ``DefaultSessionProcessor`` runs each device's items on a thread that ends for good when an error escapes
its own error handler (a failure write failing in a database outage). The beat would go on renewing the lease of
the item that thread held, and reporting ``busy``, forever. So every beat asks whether a thread died; if one did,
the worker reports ``unhealthy``, lets go of the dead thread's item (handed back to run again, see
``WorkerSessionQueue.release_thread``; with the database still down this waits for a later beat) and starts the
thread again. A thread that keeps dying (``max_restarts`` within ``window_seconds``) is not restarted: the worker
hands back its items and exits non-zero, for its supervisor to start a fresh process.
"""

from __future__ import annotations

import time
from collections import deque
from logging import Logger
from typing import Any

from invokeai_saas.patches.session_processor_default_workers import DeadThread, dead_threads, restart_thread


class ProcessorThreadsFailing(RuntimeError):
    """The processing threads died too often to keep restarting them in this process."""


class ProcessorThreads:
    def __init__(
        self, processor: Any, queue: Any, logger: Logger, max_restarts: int = 3, window_seconds: float = 600.0
    ) -> None:
        self._processor = processor
        self._queue = queue
        self._logger = logger
        self._max_restarts = max_restarts
        self._window = window_seconds
        self._restarts: deque[float] = deque()
        self._announced: set[tuple[int, int | None]] = set()

    def dead(self) -> list[DeadThread]:
        """The processing threads that died (each logged once)."""
        dead = dead_threads(self._processor)
        for thread in dead:
            if (thread.index, thread.ident) not in self._announced:
                self._announced.add((thread.index, thread.ident))
                self._logger.error(
                    f"Processing thread {thread.name} died; this worker reports itself unhealthy until it is restarted"
                )
        return dead

    def recover(self, dead: list[DeadThread]) -> None:
        """Let go of each dead thread's item, then start the thread again. Raises what the database raises (the
        next beat tries again), or ``ProcessorThreadsFailing`` when the restart budget is spent."""
        for thread in dead:
            if thread.ident is not None:
                item_id = self._queue.release_thread(thread.ident)
                if item_id is not None:
                    self._logger.warning(f"Queue item {item_id} of the dead thread {thread.name} was let go of")
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > self._window:
                self._restarts.popleft()
            if len(self._restarts) >= self._max_restarts:
                raise ProcessorThreadsFailing(
                    f"processing threads died {len(self._restarts) + 1} times within {self._window:.0f}s"
                )
            self._restarts.append(now)
            restart_thread(self._processor, thread.index)
            self._logger.warning(f"Processing thread {thread.name} restarted")
