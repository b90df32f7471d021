"""Temporary data dirs that every server can use.

When running as root, PostgreSQL runs as the ``postgres`` user, which must be able to walk down to its data dir.
pytest's ``tmp_path`` lives under ``/tmp/pytest-of-root`` (mode 0700), which that user cannot enter, so fixtures
that start PostgreSQL should take their folder from here instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["make_temp_data_dir"]


def make_temp_data_dir(prefix: str = "invokeai-devstack-") -> Path:
    """Create a fresh temp dir that other users may traverse (0711: they can enter it, not list it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path
