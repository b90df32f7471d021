"""No N+1: every list route sends the same number of SQL statements whatever the page size, counted inside
a real InvokeAI app in saas mode on PostgreSQL (all routers and services real; see support/route_sql_counts)."""

from __future__ import annotations

import pytest

from invokeai_saas.config import write_settings
from invokeai_saas.devstack import PostgresServer
from tests.support.databases import fresh_database
from tests.support.invokeai import run_marked_python


@pytest.fixture(scope="module")
def counts(
    postgres: PostgresServer, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[int]]:
    root = tmp_path_factory.mktemp("route-counts")
    with fresh_database(postgres, pg_template) as engine:
        write_settings(
            root / "saas.yaml", {"enabled": True, "database_url": engine.url.render_as_string(hide_password=False)}
        )
        counts: dict[str, list[int]] = run_marked_python(
            ["-m", "tests.support.route_sql_counts", str(root)], "ROUTE_SQL_COUNTS", timeout=400
        )
    return counts


@pytest.mark.parametrize("route", ["images", "images_by_names", "boards", "videos", "workflows", "queue_items"])
def test_list_route_is_bounded(counts: dict[str, list[int]], route: str) -> None:
    small, large = counts[route]
    assert small == large, f"{route}: {small} statements for 5 items, {large} for 40"
    # 7: one more than before the signed-out-token check, a read per request (invokeai_saas.auth.sessions).
    assert large <= 7, f"{route}: {large} statements"
