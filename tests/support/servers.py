"""Local servers of a test module's or session's own: started in a fresh temporary data dir, stopped and removed
afterwards (PostgreSQL runs as its own OS user, so the dir comes from ``make_temp_data_dir``, not pytest's)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from invokeai_saas.devstack import ManagedServer, make_temp_data_dir

Server = TypeVar("Server", bound=ManagedServer)


@contextmanager
def temporary_server(make: Callable[[Path], Server], prefix: str) -> Iterator[Server]:
    data_dir = make_temp_data_dir(prefix)
    server = make(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
