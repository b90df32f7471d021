"""Port helpers: every server binds 127.0.0.1 only, so that is the only address ever checked or handed out."""

from __future__ import annotations

import errno
import random
import socket

from invokeai_saas.devstack.errors import DevStackError, PortBusy

__all__ = ["LOOPBACK", "free_port", "ensure_port_free", "port_is_free", "free_port_pair"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Ask the kernel for a port nobody uses right now (there is a small race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Try to bind the port the way the servers do.

    SO_REUSEADDR mirrors what the servers set themselves, so a port left in TIME_WAIT by a server we just stopped
    counts as free (it is, for them), while a port with any listener (on 127.0.0.1 or 0.0.0.0) counts as busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def ensure_port_free(port: int, what: str, hint: str | None = None) -> None:
    """Raise PortBusy *before* a server is launched, because a server failing to bind says so only in its log."""
    if not port_is_free(port):
        raise PortBusy(what, port, hint)


def free_port_pair(offset: int, taken: set[int] | None = None, attempts: int = 200) -> int:
    """Find a port P such that P and P + offset are both free.

    SeaweedFS derives some gRPC addresses as ``http port + 10000`` instead of using the configured gRPC port, so
    those two must be free together. Ports come from a band below the kernel's ephemeral range, where outgoing
    connections cannot grab them between our check and the bind.
    """
    taken = taken or set()
    for _ in range(attempts):
        port = random.randint(20000, 65535 - offset)
        pair = port + offset
        if port in taken or pair in taken:
            continue
        if port_is_free(port) and port_is_free(pair):
            return port
    raise DevStackError(f"no pair of free ports {offset} apart found on {LOOPBACK}; free some ports in 20000-65535")
