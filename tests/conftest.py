"""Session fixtures: the real local servers on free loopback ports, and real ``invokeai-web`` processes."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from invokeai_saas.config import SaasSettings
from invokeai_saas.db import migrate
from invokeai_saas.db.engine import sync_url
from invokeai_saas.devstack import LocalStack, PostgresServer, SeaweedS3Server, make_temp_data_dir
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.keys import KeyLayout
from invokeai_saas.storage.object_index import StorageObjectIndex
from invokeai_saas.storage.object_store import S3ObjectStore
from tests.support.databases import build_template, fresh_database, stock_sqlite_database
from tests.support.deployment import web_server, worker_process
from tests.support.invokeai import ENTRY_POINT_PLUGIN_DIR, TEST_ENV
from tests.support.servers import temporary_server

os.environ.update(TEST_ENV)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """PostgreSQL, Redis, SeaweedFS S3, moto SQS and localstripe, started once for the whole run."""
    data_dir = make_temp_data_dir("saas-test-stack-")  # PostgreSQL runs as its own OS user and must reach it
    local_stack = LocalStack(data_dir, durable=False)
    local_stack.start()
    try:
        yield local_stack
    finally:
        local_stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def saas_web(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InvokeAIWebServer]:
    """Stock ``invokeai-web`` in saas mode on the local stack, with a third-party plugin installed the way a
    real distribution is (a .dist-info with an ``invokeai_saas`` entry point on the import path)."""
    root = tmp_path_factory.mktemp("saas-root")
    migrate.upgrade_url(str(stack.saas_settings()["database_url"]))
    pythonpath = os.pathsep.join(filter(None, [str(ENTRY_POINT_PLUGIN_DIR), os.environ.get("PYTHONPATH")]))
    settings = {"enabled": True, **stack.saas_settings()}
    # SQS is configured, so graphs run on a worker process; the worker shares the web root's models directory.
    web = web_server(root, settings, env={"PYTHONPATH": pythonpath})
    worker = worker_process(tmp_path_factory.mktemp("saas-worker-root"), settings, root)
    start_together([web, worker], timeout=300)
    try:
        yield web
    finally:
        worker.stop(timeout=60)
        web.stop(timeout=30)


@pytest.fixture(scope="session")
def saas_db(stack: LocalStack) -> Iterator[Engine]:
    """An engine on the database ``saas_web`` serves (to set balances, plans and read the ledger directly)."""
    engine = create_engine(sync_url(str(stack.saas_settings()["database_url"])))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own for the behaviour suites, so they do not need the whole stack."""
    with temporary_server(lambda data_dir: PostgresServer(data_dir, durable=False), "saas-test-pg-") as server:
        yield server


@pytest.fixture(scope="session")
def pg_template(postgres: PostgresServer) -> str:
    """A migrated template database; tests clone it instead of migrating again."""
    return build_template(postgres)


@pytest.fixture()
def pg_engine(postgres: PostgresServer, pg_template: str) -> Iterator[Engine]:
    """A fresh, migrated PostgreSQL database for one test (cloned from the template, dropped afterwards)."""
    with fresh_database(postgres, pg_template) as engine:
        yield engine


@pytest.fixture()
def sqlite_db(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Stock InvokeAI's SQLite database (in memory, built by InvokeAI's own migrator) for one test."""
    return stock_sqlite_database(tmp_path)


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


STORAGE_TEST_BUCKET = "saas-storage-tests"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3Server]:
    """A SeaweedFS S3 server of its own for the storage suites (loopback only, telemetry off, credentials on)."""
    with temporary_server(SeaweedS3Server, "saas-test-s3-") as server:
        server.ensure_bucket(STORAGE_TEST_BUCKET)
        yield server


def object_storage_settings(seaweed: SeaweedS3Server, **overrides: object) -> SaasSettings:
    """Settings for the test bucket under a prefix of its own, so tests never see each other's objects."""
    values: dict[str, object] = {
        "enabled": True,
        "s3_bucket": STORAGE_TEST_BUCKET,
        "s3_endpoint_url": seaweed.endpoint_url,
        "s3_region": seaweed.region,
        "s3_access_key_id": seaweed.access_key_id,
        "s3_secret_access_key": seaweed.secret_access_key,
        "s3_prefix": f"t-{uuid.uuid4().hex[:12]}/",
    }
    values.update(overrides)
    return SaasSettings(**values)  # type: ignore[arg-type]


@pytest.fixture()
def object_storage(pg_engine: Engine, seaweed: SeaweedS3Server) -> ObjectStorage:
    """The real object store (SeaweedFS) and the object index in a fresh, migrated PostgreSQL database."""
    settings = object_storage_settings(seaweed)
    return ObjectStorage(
        store=S3ObjectStore(settings),
        index=StorageObjectIndex(pg_engine),
        layout=KeyLayout(settings.s3_prefix),
        settings=settings,
    )


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SD 1.x model (diffusers format), built once per run, for real txt2img graphs on the CPU."""
    from tests.support.tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "tiny-sd15")
