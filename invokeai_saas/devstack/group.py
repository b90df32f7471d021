"""Start several managed servers at once: launch all, then wait for each, so their boot times overlap."""

from __future__ import annotations

import time
from collections.abc import Sequence

from invokeai_saas.devstack.process import ManagedServer


def start_together(servers: Sequence[ManagedServer], timeout: float = 60) -> None:
    """Start every server, or none: prerequisites and ports are checked for all first; if one fails to come
    up, the ones already launched are stopped and the error is re-raised. Call from a thread that outlives
    the servers (their parent-death signal follows the launching thread)."""
    for server in servers:
        server.check_prerequisites()
    for server in servers:
        server.check_ports()
    deadline = time.monotonic() + timeout
    launched: list[ManagedServer] = []
    try:
        for server in servers:
            if server.is_running():
                continue
            launched.append(server)
            server._launch(deadline)
        for server in launched:
            server._await_ready(deadline, timeout)
    except BaseException:
        for server in reversed(launched):
            server.stop()
        raise
