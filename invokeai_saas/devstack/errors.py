"""Errors raised while starting or stopping the local servers.

Every message is a single line a human can act on: the ``invokeai-saas dev`` command prints ``str(exc)`` and
exits, and test fixtures show it as the failure reason, so a traceback must never be needed to understand what
went wrong or what to do next.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DevStackError", "PrerequisiteMissing", "PortBusy", "ServerFailed"]


def _one_line(text: str) -> str:
    """Collapse whitespace so a message (or a log line quoted in it) can never span several lines."""
    return " ".join(text.split())


class DevStackError(RuntimeError):
    """Base class, so callers can catch every local-stack problem with one ``except``."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


class PrerequisiteMissing(DevStackError):
    """A program or package the server needs is not installed (or cannot be used); the message says how to fix it."""


class PortBusy(DevStackError):
    """A port the server must listen on is already taken on 127.0.0.1."""

    def __init__(self, what: str, port: int, hint: str | None = None) -> None:
        self.what = what
        self.port = port
        advice = f"stop what is using it or {hint}" if hint else "stop what is using it"
        super().__init__(f"{what}: port {port} on 127.0.0.1 is already in use; {advice}")


class ServerFailed(DevStackError):
    """A server process exited early or never answered its probe; its log file holds the details."""

    def __init__(self, what: str, problem: str, log_path: Path | None = None) -> None:
        self.what = what
        self.log_path = log_path
        where = f"; see {log_path}" if log_path is not None else ""
        super().__init__(f"{what}: {problem}{where}")
