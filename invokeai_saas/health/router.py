"""The health route. It answers without authentication (load balancers call it) and with 503 when any
backend is unreachable, so an instance that lost its database is taken out of rotation."""

from __future__ import annotations

from importlib.metadata import version as dist_version

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from invokeai_saas import __version__
from invokeai_saas.health.probes import BackendStatus, run_probes, select_probes
from invokeai_saas.runtime import current_runtime

health_router = APIRouter(prefix="/api/v1/saas", tags=["saas"])


class Backends(BaseModel):
    database: BackendStatus
    object_store: BackendStatus
    queue: BackendStatus
    events: BackendStatus
    billing: BackendStatus


class HealthResponse(BaseModel):
    status: str = Field(description="'ok' when every backend is reachable, else 'degraded'.")
    version: str = Field(description="The invokeai-saas version.")
    invokeai_version: str = Field(description="The InvokeAI version this process runs.")
    backends: Backends


@health_router.get(
    "/health",
    operation_id="saas_health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "A backend is unreachable."}},
)
async def get_health() -> JSONResponse:
    """Versions, and for each backend which implementation is active and whether it answers right now."""
    runtime = current_runtime()
    statuses = await run_probes(select_probes(runtime.health_probes()), runtime.settings.health_probe_timeout)
    healthy = all(s.reachable for s in statuses.values())
    body = HealthResponse(
        status="ok" if healthy else "degraded",
        version=__version__,
        invokeai_version=dist_version("invokeai"),
        backends=Backends(**statuses),
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
