"""Stock ``invokeai-web`` as a managed child process (used by ``invokeai-saas dev`` and the tests).

It is the unmodified InvokeAI entry point: saas mode reaches it only through the activation hook and
the ``saas.yaml`` in its root, exactly as an operator's deployment would.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from invokeai_saas.devstack.errors import PrerequisiteMissing
from invokeai_saas.devstack.process import ManagedServer


def find_console_script(name: str) -> Path | None:
    """A console script of this installation: beside the running interpreter first (a venv that is not activated),
    else on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return beside_python
    found = shutil.which(name)
    return Path(found) if found else None


def find_invokeai_web() -> Path | None:
    return find_console_script("invokeai-web")


class InvokeAIWebServer(ManagedServer):
    """``invokeai-web --root ROOT`` on 127.0.0.1:PORT, with ``saas.yaml`` written from ``saas_settings``
    (None leaves the root's saas.yaml as it is). Ready when ``/api/v1/app/version`` answers."""

    name: ClassVar[str] = "invokeai-web"
    label: ClassVar[str] = "invokeai-web"
    port_option: ClassVar[str] = "--port"

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        *,
        saas_settings: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        bin_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__(root, port, log_dir=log_dir, bin_dirs=bin_dirs)
        self.root = self.data_dir
        self.saas_settings = dict(saas_settings) if saas_settings is not None else None
        self.extra_env = dict(env or {})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _executable(self) -> Path | None:
        if self.bin_dirs is not None:
            for directory in self.bin_dirs:
                candidate = directory / "invokeai-web"
                if candidate.exists():
                    return candidate
            return None
        return find_invokeai_web()

    def check_prerequisites(self) -> None:
        if self._executable() is None:
            raise PrerequisiteMissing(
                "invokeai-web: not found; install the package first (scripts/setup, or pip install invokeai-saas)"
            )

    def _prepare(self, deadline: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.saas_settings is not None:
            from invokeai_saas.config import SAAS_CONFIG_FILENAME, write_settings

            write_settings(self.root / SAAS_CONFIG_FILENAME, self.saas_settings)

    def _command(self) -> list[str]:
        executable = self._executable()
        assert executable is not None
        return [str(executable), "--root", str(self.root)]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"INVOKEAI_HOST": self.host, "INVOKEAI_PORT": str(self.port)})
        env.update(self.extra_env)
        return env

    def _cwd(self) -> Path:
        return self.root

    def _probe(self) -> None:
        with urllib.request.urlopen(f"{self.url}/api/v1/app/version", timeout=2) as response:
            json.loads(response.read())
