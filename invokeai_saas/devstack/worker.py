"""``invokeai-saas worker`` as a managed child process (used by ``invokeai-saas dev`` and the tests).

It is ready once its registry row exists and beats: from then on it takes dispatch messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from sqlalchemy import create_engine, select

from invokeai_saas.devstack.errors import PrerequisiteMissing
from invokeai_saas.devstack.process import ManagedServer, PortClaim
from invokeai_saas.devstack.web import find_console_script


def find_invokeai_saas() -> Path | None:
    return find_console_script("invokeai-saas")


class InvokeAIWorker(ManagedServer):
    """``invokeai-saas worker --root ROOT``, with ``saas.yaml`` written from ``saas_settings``. Listens on no port."""

    name: ClassVar[str] = "invokeai-saas-worker"
    label: ClassVar[str] = "worker"
    port_option: ClassVar[str] = "--worker-id"

    def __init__(
        self,
        root: Path,
        *,
        saas_settings: Mapping[str, object],
        env: Mapping[str, str] | None = None,
        worker_id: str | None = None,
        tiers: Sequence[int] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(root, None, log_dir=log_dir)
        self.root = self.data_dir
        self.saas_settings = dict(saas_settings)
        self.extra_env = dict(env or {})
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:8]}"
        self.tiers = list(tiers) if tiers is not None else None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.worker_id}.log"

    def ports(self) -> list[PortClaim]:
        return []

    def check_prerequisites(self) -> None:
        if find_invokeai_saas() is None:
            raise PrerequisiteMissing("invokeai-saas: not found; install the package first (scripts/setup)")

    def _prepare(self, deadline: float) -> None:
        from invokeai_saas.config import SAAS_CONFIG_FILENAME, write_settings

        self.root.mkdir(parents=True, exist_ok=True)
        write_settings(self.root / SAAS_CONFIG_FILENAME, self.saas_settings)

    def _command(self) -> list[str]:
        executable = find_invokeai_saas()
        assert executable is not None
        command = [str(executable), "worker", "--root", str(self.root), "--worker-id", self.worker_id]
        if self.tiers is not None:
            command += ["--tiers", ",".join(str(t) for t in self.tiers)]
        return command

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        return env

    def _probe(self) -> None:
        from invokeai_saas.db.engine import sync_url
        from invokeai_saas.db.tables import workers

        engine = create_engine(sync_url(str(self.saas_settings["database_url"])), connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    select(workers.c.worker_id).where(
                        workers.c.worker_id == self.worker_id, workers.c.stopped_at.is_(None)
                    )
                ).first()
        finally:
            engine.dispose()
        if row is None:
            raise RuntimeError("not registered yet")
