"""Seeding helpers shared by the behaviour suites: rows both backends need (users), written the same way."""

from __future__ import annotations

from sqlalchemy import text

from tests.services.conftest import Backend


def add_user(backend: Backend, user_id: str, is_admin: bool = False) -> str:
    """Insert a user row directly (the users service has its own suite)."""
    params = {"user_id": user_id, "email": f"{user_id}@example.com", "is_admin": is_admin}
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (user_id, email, display_name, password_hash, is_admin) "
                    "VALUES (:user_id, :email, :user_id, 'x', :is_admin)"
                ),
                params,
            )
    else:
        with backend.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO users (user_id, email, display_name, password_hash, is_admin) VALUES (?, ?, ?, 'x', ?)",
                (user_id, params["email"], user_id, is_admin),
            )
    return user_id
