"""Finding the programs the servers run.

Every server accepts ``bin_dirs``: when given, *only* those directories are searched. That lets a caller pin a
specific install and lets tests prove the "not installed" path without touching the machine's PATH.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from invokeai_saas.devstack.errors import PrerequisiteMissing

__all__ = ["default_search_dirs", "find_executable", "postgres_bin_dir"]

_PG_ROOT = Path("/usr/lib/postgresql")


def default_search_dirs() -> list[Path]:
    """The running interpreter's bin dir first (the venv may not be activated, e.g. ``.venv/bin/python -m
    pytest``, yet ``weed`` and ``moto_server`` live there), then PATH."""
    dirs = [Path(sys.executable).parent]
    dirs += [Path(entry) for entry in os.environ.get("PATH", os.defpath).split(os.pathsep) if entry]
    return dirs


def _executable_in(directory: Path, name: str) -> Path | None:
    candidate = directory / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    return None


def find_executable(names: Sequence[str], bin_dirs: Sequence[Path] | None, what: str, install_hint: str) -> Path:
    """Return the first of ``names`` found, searching ``bin_dirs`` (or the defaults); raise PrerequisiteMissing."""
    dirs = list(bin_dirs) if bin_dirs is not None else default_search_dirs()
    for name in names:
        for directory in dirs:
            found = _executable_in(directory, name)
            if found is not None:
                return found
    label = " or ".join(names)
    raise PrerequisiteMissing(f"{what}: {label} not found; {install_hint}")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)


def postgres_bin_dir(bin_dirs: Sequence[Path] | None, wanted_version: str | None) -> Path:
    """Pick the directory holding both ``initdb`` and ``postgres``.

    Debian keeps them out of PATH, in /usr/lib/postgresql/<major>/bin. An existing cluster can only be opened by
    its own major version, so that one wins when installed; otherwise the highest installed version is used.
    """
    install = "install Debian's postgresql package (apt-get install postgresql)"
    if bin_dirs is not None:
        candidates = list(bin_dirs)
    else:
        versioned = sorted(
            (path for path in _PG_ROOT.glob("*/bin") if path.is_dir()),
            key=lambda path: _version_key(path.parent),
            reverse=True,
        )
        if wanted_version is not None:
            versioned.sort(key=lambda path: path.parent.name != wanted_version)
        candidates = versioned + default_search_dirs()
    for tool in ("initdb", "postgres"):
        if not any(_executable_in(directory, tool) for directory in candidates):
            raise PrerequisiteMissing(f"PostgreSQL: {tool} not found; {install}")
    for directory in candidates:
        if _executable_in(directory, "initdb") and _executable_in(directory, "postgres"):
            return directory
    raise PrerequisiteMissing(f"PostgreSQL: initdb and postgres are not installed side by side; {install}")
