"""Credits tests against the session's ``saas_web``: users created through its API."""

from __future__ import annotations

import uuid

from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import create_user
from tests.support.invokeai import admin_token


def saas_user(web: InvokeAIWebServer, name: str) -> tuple[str, dict[str, str]]:
    """A new (Trial) user created by the admin; returns its id and bearer headers."""
    admin = {"Authorization": f"Bearer {admin_token(web.url)}"}
    user_id, token = create_user(web.url, admin, f"{name}-{uuid.uuid4().hex[:6]}@example.com")
    return user_id, {"Authorization": f"Bearer {token}"}
