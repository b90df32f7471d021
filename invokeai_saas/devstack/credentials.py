"""Secrets generated on first start and kept in the server's data dir.

Data persists across runs, so the passwords that protect it must persist too: a fresh password on every start
would lock the app out of its own database. The file is written atomically and readable by its owner only.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Callable
from pathlib import Path

from invokeai_saas.devstack.errors import ServerFailed

__all__ = ["load_or_create", "write_private", "token", "upper_token"]


def token(nbytes: int = 24) -> str:
    """URL-safe random text, so it can go into a connection URL without quoting surprises."""
    return secrets.token_urlsafe(nbytes)


def upper_token(length: int) -> str:
    """Upper-case letters and digits, the shape AWS access key ids have."""
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically, so a crash never leaves half a secret behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def load_or_create(path: Path, what: str, factory: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Return the secrets stored at ``path``, creating them with ``factory`` on first use.

    Keys the factory knows but the file lacks are added, so a newer version can introduce a secret without
    forcing anyone to wipe their data dir.
    """
    fresh = factory()
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ServerFailed(what, f"cannot read stored credentials ({exc}); fix or delete {path}") from exc
        if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
            raise ServerFailed(what, f"stored credentials are malformed; fix or delete {path}")
        if all(key in stored for key in fresh):
            return stored
        fresh.update(stored)
    write_private(path, json.dumps(fresh, indent=2) + "\n")
    return fresh
