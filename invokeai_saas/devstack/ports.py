"""Port helpers: every server binds 127.0.0.1 only, so that is the only address ever checked or handed out."""

from __future__ import annotations

import errno
import random
import socket

from invokeai_saas.devstack.errors import DevStackError, PortBusy

__all__ = ["LOOPBACK", "free_port", "ensure_port_free", "port_is_free", "pick_port"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Ask the kernel for a port nobody uses right now (there is a small race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# TCP states of sockets no process owns any more: closed connections the kernel still winds down.
_LINGERING_STATES = {"04", "05", "06", "07", "09", "0B"}  # FIN_WAIT1/2, TIME_WAIT, CLOSE, LAST_ACK, CLOSING


def _only_lingering_sockets(port: int) -> bool:
    """True when every TCP socket on ``port`` is a leftover of a closed connection (and /proc can tell)."""
    states: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            return False
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.append(fields[3])
    return bool(states) and all(state in _LINGERING_STATES for state in states)


def port_is_free(port: int) -> bool:
    """Whether a server could bind the port on 127.0.0.1 now.

    The bind uses SO_REUSEADDR like the servers do. Some leftovers of closed connections still make that bind
    fail here (seen with SeaweedFS after its parent was killed) although the servers bind fine, so when the only
    sockets on the port are such leftovers the port counts as free; any listener or live connection keeps it busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return _only_lingering_sockets(port)
            if exc.errno == errno.EACCES:
                return False
            raise
        return True


def ensure_port_free(port: int, what: str, hint: str | None = None) -> None:
    """Raise PortBusy *before* a server is launched, because a server failing to bind says so only in its log."""
    if not port_is_free(port):
        raise PortBusy(what, port, hint)


# Below the kernel's ephemeral range (32768+), so an outgoing connection cannot grab a port between our check
# and the server's bind, and a port remembered for the next run is likely to still be free then.
_BAND = (20000, 32767)


def pick_port(taken: set[int], offset: int = 0, attempts: int = 500) -> int:
    """Pick a free port P (with P + offset free too when offset is set) from the band above, avoiding ``taken``.

    SeaweedFS derives some gRPC addresses as ``http port + 10000`` instead of using the configured gRPC port, so
    for those both must be free together.
    """
    low, high = _BAND
    if offset:
        # keep P + offset inside the band when it fits there, else anywhere below 65536
        high = high - offset if high - offset > low else 65535 - offset
    for _ in range(attempts):
        port = random.randint(low, high)
        if port in taken or port + offset in taken:
            continue
        if port_is_free(port) and (not offset or port_is_free(port + offset)):
            return port
    raise DevStackError(f"no free port found on {LOOPBACK} between {low} and {high + offset}; free some ports")
