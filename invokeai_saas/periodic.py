"""A daemon thread that runs one function every ``interval`` seconds, for the background passes every process runs
(the dispatch reaper, the storage cleanup; each pass takes a deployment-wide advisory lock, so processes take
turns)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from logging import Logger

# Every pass's thread is named with this prefix, so a thread dump, or a test counting a request's SQL statements,
# can tell the passes apart from request threads.
THREAD_PREFIX = "saas-pass:"


class PeriodicTask:
    """Calls ``run(pass_number)`` every ``interval`` seconds until stopped. A failing pass is logged and the next
    one runs as scheduled: a background pass must never kill its thread."""

    def __init__(self, name: str, interval: float, run: Callable[[int], None], logger: Logger) -> None:
        self._name = name
        self._interval = interval
        self._run = run
        self._logger = logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{THREAD_PREFIX}{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        passes = 0
        while not self._stop.wait(self._interval):
            passes += 1
            try:
                self._run(passes)
            except Exception as error:
                self._logger.warning(f"{self._name}: pass failed ({type(error).__name__}: {error})")
