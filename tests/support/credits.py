"""Credits tests against the session's ``saas_web``: users created through its API."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, text

from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import create_user
from tests.support.invokeai import admin_token


def saas_user(web: InvokeAIWebServer, name: str) -> tuple[str, dict[str, str]]:
    """A new (Trial) user created by the admin; returns its id and bearer headers."""
    admin = {"Authorization": f"Bearer {admin_token(web.url)}"}
    user_id, token = create_user(web.url, admin, f"{name}-{uuid.uuid4().hex[:6]}@example.com")
    return user_id, {"Authorization": f"Bearer {token}"}


def set_plan(engine: Engine, user_id: str, plan_id: str, status: str = "active") -> None:
    """Put a user on a plan directly in the database (what billing or an operator does), the period unchanged."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE subscriptions SET plan_id = :p, status = :s WHERE user_id = :u"),
            {"p": plan_id, "s": status, "u": user_id},
        )
