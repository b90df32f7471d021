"""The Alembic schema: it builds InvokeAI's tables, matches the table definitions, keeps stock's triggers'
behaviour, downgrades cleanly, and the server-side check refuses an unmigrated database."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from invokeai_saas.db import migrate
from invokeai_saas.db.tables import metadata
from invokeai_saas.devstack import PostgresServer
from tests.support.databases import fresh_database, stock_sqlite_database

CLI = str(Path(sys.executable).parent / "invokeai-saas")

STOCK_TABLES = {
    "app_settings",
    "board_images",
    "board_videos",
    "boards",
    "client_state",
    "image_subfolder_move_items",
    "image_subfolder_move_jobs",
    "images",
    "model_relationships",
    "models",
    "session_queue",
    "shared_boards",
    "style_presets",
    "system_prompts",
    "user_invitations",
    "user_sessions",
    "users",
    "videos",
    "workflow_library",
}


def test_upgrade_builds_every_stock_table_and_matches_the_definitions(pg_engine: Engine) -> None:
    assert migrate.current_revision(pg_engine) == migrate.head_revision()
    assert STOCK_TABLES <= set(inspect(pg_engine).get_table_names())
    with pg_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    # Expression indexes (COLLATE "C") cannot be compared by autogenerate; check they exist instead.
    expression_indexes = {"ix_images_image_name_c", "ix_workflow_library_name_c"}
    diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name in expression_indexes)]
    assert diff == []
    present = {i["name"] for t in ("images", "workflow_library") for i in inspect(pg_engine).get_indexes(t)}
    assert expression_indexes <= present


def test_updated_at_and_queue_status_triggers(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        conn.execute(text("INSERT INTO app_settings (key, value) VALUES ('k', 'v1')"))
        before = conn.execute(text("SELECT updated_at FROM app_settings WHERE key = 'k'")).scalar_one()
    time.sleep(0.01)
    with pg_engine.begin() as conn:
        conn.execute(text("UPDATE app_settings SET value = 'v2' WHERE key = 'k'"))
        after = conn.execute(text("SELECT updated_at FROM app_settings WHERE key = 'k'")).scalar_one()
    assert after > before

    with pg_engine.begin() as conn:
        conn.execute(
            text("INSERT INTO session_queue (batch_id, queue_id, session_id, session) VALUES ('b', 'q', 's', '{}')")
        )
        conn.execute(text("UPDATE session_queue SET status = 'in_progress'"))
        started, completed = conn.execute(text("SELECT started_at, completed_at FROM session_queue")).one()
        assert started is not None and completed is None
        conn.execute(text("UPDATE session_queue SET status = 'completed'"))
        completed = conn.execute(text("SELECT completed_at FROM session_queue")).scalar_one()
        assert completed is not None


def test_generated_columns_read_inside_json(pg_engine: Engine) -> None:
    workflow = '{"name": "W", "description": "D", "tags": "a, b", "meta": {"category": "user"}}'
    with pg_engine.begin() as conn:
        conn.execute(
            text("INSERT INTO workflow_library (workflow_id, workflow) VALUES ('w', CAST(:w AS jsonb))"),
            {"w": workflow},
        )
        row = conn.execute(text("SELECT name, description, tags, category FROM workflow_library")).one()
    assert tuple(row) == ("W", "D", "a, b", "user")


def test_downgrade_to_base_removes_everything(postgres: PostgresServer) -> None:
    with fresh_database(postgres, template=None) as engine:
        migrate.upgrade(engine)
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()


def test_check_migrated_names_the_command(postgres: PostgresServer) -> None:
    with fresh_database(postgres, template=None) as engine:
        with pytest.raises(migrate.DatabaseNotMigrated, match="invokeai-saas db upgrade"):
            migrate.check_migrated(engine)
        migrate.upgrade(engine)
        migrate.check_migrated(engine)


def test_db_cli_upgrade_current_downgrade(postgres: PostgresServer) -> None:
    with fresh_database(postgres, template=None) as engine:
        url = engine.url.render_as_string(hide_password=False)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [CLI, "db", "--database-url", url, *args], capture_output=True, text=True, timeout=120
            )

        r = cli("current")
        assert r.returncode == 0 and "current: none" in r.stdout and "needs 'invokeai-saas db upgrade'" in r.stdout
        r = cli("upgrade")
        assert r.returncode == 0, r.stderr
        assert migrate.head_revision() in r.stdout
        assert "up to date" in cli("current").stdout
        r = cli("downgrade", "base")
        assert r.returncode == 0 and "base (empty)" in r.stdout


def test_db_cli_without_database_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [CLI, "db", "--root", str(tmp_path), "current"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "INVOKEAI_SAAS_DATABASE_URL" in r.stderr


def test_seed_rows_match_stock(pg_engine: Engine, tmp_path: Path) -> None:
    stock = stock_sqlite_database(tmp_path)
    with stock.transaction() as cursor:
        cursor.execute("SELECT id, name, content, user_id, is_public FROM system_prompts ORDER BY id")
        stock_prompts = [(r[0], r[1], r[2], r[3], bool(r[4])) for r in cursor.fetchall()]
        cursor.execute("SELECT user_id, email, display_name, password_hash, is_admin, is_active FROM users")
        stock_users = [(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5])) for r in cursor.fetchall()]
    with pg_engine.connect() as conn:
        prompts = [
            tuple(r)
            for r in conn.execute(text("SELECT id, name, content, user_id, is_public FROM system_prompts ORDER BY id"))
        ]
        users = [
            tuple(r)
            for r in conn.execute(
                text("SELECT user_id, email, display_name, password_hash, is_admin, is_active FROM users")
            )
        ]
        secret = conn.execute(text("SELECT value FROM app_settings WHERE key = 'jwt_secret'")).scalar_one()
    assert prompts == stock_prompts and len(prompts) == 8
    assert users == stock_users
    assert len(secret) == 64 and int(secret, 16) >= 0
