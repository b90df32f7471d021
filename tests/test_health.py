"""The health route's behaviour when backends fail: 503, no hostnames, bounded by the probe timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from invokeai_saas.config import SaasSettings
from invokeai_saas.devstack import LocalStack, free_port
from invokeai_saas.health.probes import BackendProbe, run_probe
from invokeai_saas.health.router import health_router
from invokeai_saas.plugins.manager import get_plugin_manager
from invokeai_saas.runtime import SaasRuntime, set_runtime


@pytest.fixture()
def client_for() -> Iterator:
    def make(settings: SaasSettings) -> TestClient:
        set_runtime(SaasRuntime(settings=settings, plugin_manager=get_plugin_manager(settings)))
        app = FastAPI()
        app.include_router(health_router)
        return TestClient(app)

    yield make
    set_runtime(None)


def test_dead_backends_give_503_without_hostnames(client_for) -> None:  # type: ignore[no-untyped-def]
    dead = free_port()
    settings = SaasSettings(
        enabled=True,
        database_url=f"postgresql+psycopg://u:hunter2@127.0.0.1:{dead}/db",
        redis_url=f"redis://:hunter2@127.0.0.1:{dead}/0",
        s3_bucket="bucket",
        s3_endpoint_url=f"http://127.0.0.1:{dead}",
        s3_access_key_id="AKIAEXAMPLE",
        s3_secret_access_key="hunter2",
        sqs_endpoint_url=f"http://127.0.0.1:{dead}",
        stripe_api_key="sk_test_hunter2",
        stripe_api_base=f"http://127.0.0.1:{dead}",
        health_probe_timeout=20,
    )
    r = client_for(settings).get("/api/v1/saas/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded"
    assert {n: b["implementation"] for n, b in body["backends"].items()} == {
        "database": "postgres",
        "object_store": "s3",
        "queue": "sqs",
        "events": "redis",
        "billing": "stripe",
    }
    for backend in body["backends"].values():
        assert backend["reachable"] is False
        assert backend["detail"].startswith(("unreachable (", "probe timed out")), backend
    for leak in ("127.0.0.1", str(dead), "hunter2", "AKIAEXAMPLE", "Traceback"):
        assert leak not in r.text


def test_live_stack_is_reachable_in_process(client_for, stack: LocalStack) -> None:  # type: ignore[no-untyped-def]
    settings = SaasSettings(enabled=True, **stack.saas_settings())
    body = client_for(settings).get("/api/v1/saas/health").json()
    # No InvokeAI services in this process: the plugin backends answer, nothing is faked.
    assert all(body["backends"][b]["reachable"] for b in ("database", "object_store", "queue", "events", "billing"))


def test_stock_fallbacks_without_services_are_not_ready(client_for) -> None:  # type: ignore[no-untyped-def]
    r = client_for(SaasSettings(enabled=True)).get("/api/v1/saas/health")
    assert r.status_code == 503
    body = r.json()
    assert body["backends"]["database"] == {
        "implementation": "sqlite",
        "reachable": False,
        "detail": "unreachable (ServicesNotReady)",
    }
    assert body["backends"]["billing"]["implementation"] == "disabled"


def test_probe_timeout_is_enforced() -> None:
    def slow() -> str:
        time.sleep(2)
        return "never"

    status = asyncio.run(run_probe(BackendProbe("events", "redis", slow), timeout=0.2))
    assert status.reachable is False and status.detail == "probe timed out"
