"""``invokeai-saas user``: the saas-mode equivalent of InvokeAI's invoke-user* tools, on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from invokeai_saas.services.users.users_postgres import UserServicePostgres

CLI = str(Path(sys.executable).parent / "invokeai-saas")
PASSWORD = "Str0ng-enough-password"


def _cli(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    url = engine.url.render_as_string(hide_password=False)
    return subprocess.run(
        [CLI, "user", "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_add_list_modify_delete(pg_engine: Engine) -> None:
    r = _cli(pg_engine, "add", "--email", "ops@example.com", "--password", PASSWORD, "--name", "Ops", "--admin")
    assert r.returncode == 0, r.stderr
    users = UserServicePostgres(pg_engine)
    created = users.get_by_email("ops@example.com")
    assert created is not None and created.is_admin and created.display_name == "Ops"
    assert users.authenticate("ops@example.com", PASSWORD) is not None

    listed = json.loads(_cli(pg_engine, "list", "--json").stdout)
    assert {
        "id": created.user_id,
        "email": "ops@example.com",
        "name": "Ops",
        "is_admin": True,
        "is_active": True,
    } in listed
    assert "ops@example.com" in _cli(pg_engine, "list").stdout

    r = _cli(pg_engine, "add", "--email", "artist@example.com", "--password", PASSWORD)
    assert r.returncode == 0, r.stderr
    r = _cli(pg_engine, "modify", "--email", "artist@example.com", "--name", "Artist", "--deactivate")
    assert r.returncode == 0, r.stderr
    artist = users.get_by_email("artist@example.com")
    assert artist is not None and artist.display_name == "Artist" and artist.is_active is False

    r = _cli(pg_engine, "delete", "--email", "artist@example.com")
    assert r.returncode == 1 and "--force" in r.stderr  # no silent deletes without a terminal to confirm
    r = _cli(pg_engine, "delete", "--email", "artist@example.com", "--force")
    assert r.returncode == 0, r.stderr
    assert users.get_by_email("artist@example.com") is None


def test_errors_are_one_line(pg_engine: Engine) -> None:
    r = _cli(pg_engine, "add", "--email", "weak@example.com", "--password", "short")
    assert r.returncode == 1 and "password" in r.stderr.lower() and "Traceback" not in r.stderr
    r = _cli(pg_engine, "modify", "--email", "nobody@example.com", "--name", "X")
    assert r.returncode == 1 and "no user found" in r.stderr
    r = _cli(pg_engine, "modify", "--email", "nobody@example.com")
    assert r.returncode == 1
    assert _cli(pg_engine, "add", "--email", "dup@example.com", "--password", PASSWORD).returncode == 0
    r = _cli(pg_engine, "add", "--email", "dup@example.com", "--password", PASSWORD)
    assert r.returncode == 1 and "Traceback" not in r.stderr
