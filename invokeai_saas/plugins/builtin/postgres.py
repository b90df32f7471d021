"""The postgres plugin: active when ``database_url`` is set.

Provides the database probe; the PostgreSQL service implementations are swapped in here as they land.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from invokeai_saas.config import SaasSettings
from invokeai_saas.db.engine import get_engine
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    if saas_config.database_url is None:
        return []
    engine = get_engine(saas_config)

    def check() -> str:
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
        return f"PostgreSQL {str(version).split()[0]}"

    return [BackendProbe("database", "postgres", check)]
