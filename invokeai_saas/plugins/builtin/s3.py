"""The s3 plugin: active when ``s3_bucket`` is set. Provides the object-store probe (a HEAD on the
bucket, signed with the configured credentials, so bad keys show as unreachable)."""

from __future__ import annotations

from typing import Any

from invokeai_saas.aws import s3_client
from invokeai_saas.config import SaasSettings
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    bucket = saas_config.s3_bucket
    if bucket is None:
        return []
    client = s3_client(saas_config)

    def check() -> str:
        client.head_bucket(Bucket=bucket)
        return "bucket reachable"

    return [BackendProbe("object_store", "s3", check)]
