"""``invokeai-saas user``: the saas-mode equivalent of InvokeAI's invoke-user* tools, on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from invokeai_saas.credits.ledger import CreditLedger
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


def _subscription_and_balance(engine: Engine, user_id: str) -> tuple[Any, int]:
    with engine.connect() as conn:
        subscription = conn.execute(text("SELECT * FROM subscriptions WHERE user_id = :u"), {"u": user_id}).one()
    return subscription, CreditLedger(engine).balance(user_id).available


def test_an_operator_puts_staff_on_the_tester_plan_with_its_credits(pg_engine: Engine) -> None:
    r = _cli(pg_engine, "add", "--email", "staff@example.com", "--password", PASSWORD, "--plan", "tester")
    assert r.returncode == 0, r.stderr
    assert "Plan: Tester until" in r.stdout and "(50000 credits granted)" in r.stdout
    staff = UserServicePostgres(pg_engine).get_by_email("staff@example.com")
    assert staff is not None
    subscription, available = _subscription_and_balance(pg_engine, staff.user_id)
    assert (subscription.plan_id, subscription.status) == ("tester", "active")
    assert subscription.period_end > subscription.period_start
    assert available == 50_000 + 500  # Tester's allotment, and the trial credits every new user got
    again = _cli(pg_engine, "modify", "--email", "staff@example.com", "--plan", "tester")
    assert again.returncode == 0, again.stderr
    assert "already on it: unchanged" in again.stdout
    assert _subscription_and_balance(pg_engine, staff.user_id) == (subscription, available)  # granted once

    # Back to Trial: the trial credits are once per user; nothing already granted is taken away.
    r = _cli(pg_engine, "modify", "--email", "staff@example.com", "--plan", "trial")
    assert r.returncode == 0, r.stderr
    assert "(0 credits granted)" in r.stdout
    subscription, available = _subscription_and_balance(pg_engine, staff.user_id)
    assert (subscription.plan_id, subscription.status, available) == ("trial", "trialing", 50_500)
    ledger = CreditLedger(pg_engine)
    assert ledger.rebuild(staff.user_id) == ledger.balance(staff.user_id)


def test_an_unknown_plan_changes_nothing_and_names_the_plans(pg_engine: Engine) -> None:
    r = _cli(pg_engine, "add", "--email", "typo@example.com", "--password", PASSWORD, "--plan", "platinum")
    assert r.returncode == 1 and "no plan 'platinum'" in r.stderr and "tester" in r.stderr
    assert "Traceback" not in r.stderr
    users = UserServicePostgres(pg_engine)
    assert users.get_by_email("typo@example.com") is None  # not created half-way
    assert _cli(pg_engine, "add", "--email", "kept@example.com", "--password", PASSWORD).returncode == 0
    r = _cli(pg_engine, "modify", "--email", "kept@example.com", "--name", "Renamed", "--plan", "platinum")
    assert r.returncode == 1 and "no plan 'platinum'" in r.stderr
    kept = users.get_by_email("kept@example.com")
    assert kept is not None and kept.display_name != "Renamed"
    subscription, _ = _subscription_and_balance(pg_engine, kept.user_id)
    assert subscription.plan_id == "trial"


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_add_without_a_password_on_a_closed_stdin_is_one_line(pg_engine: Engine) -> None:
    stderr = _one_line_error(_cli(pg_engine, "add", "--email", "scripted@example.com"))
    assert "--password" in stderr
    assert UserServicePostgres(pg_engine).get_by_email("scripted@example.com") is None
    # A password piped in (no terminal) is read from stdin, as getpass would.
    url = pg_engine.url.render_as_string(hide_password=False)
    piped = subprocess.run(
        [CLI, "user", "--database-url", url, "add", "--email", "piped@example.com"],
        capture_output=True,
        text=True,
        timeout=120,
        input=PASSWORD + "\n",
    )
    assert piped.returncode == 0, piped.stderr
    assert UserServicePostgres(pg_engine).authenticate("piped@example.com", PASSWORD) is not None


def test_db_downgrade_to_an_unknown_revision_is_one_line(pg_engine: Engine) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    for action in ("downgrade", "upgrade"):
        r = subprocess.run(
            [CLI, "db", "--database-url", url, action, "no_such_revision"], capture_output=True, text=True, timeout=120
        )
        assert "no_such_revision" in _one_line_error(r)


def test_urls_of_other_databases_are_refused(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path}/invokeai.db", "mysql://ops:s3cret@db.example.com/invokeai"):
        for command in (["user", "--database-url", url, "list"], ["db", "--database-url", url, "current"]):
            r = subprocess.run([CLI, *command], capture_output=True, text=True, timeout=120)
            stderr = _one_line_error(r)
            assert "not supported" in stderr and "PostgreSQL" in stderr and "s3cret" not in stderr, stderr
