"""Upstream: ``invokeai.app.services.auth.token_service.verify_token``, and the names ``auth_dependencies`` and
``sockets`` bound it to at import. Checked on 6.14.2.

Stock decides whether a JWT is good in ``verify_token`` (signature, expiry) and then ``resolve_authorized_user``
(account exists, active, current ``token_epoch``); neither can know that the token was signed out, which is what
``invokeai_saas.auth.sessions`` records. Every place that accepts a JWT starts with ``verify_token``: the REST
dependencies (``auth_dependencies``' own binding), the Socket.IO handshake (``sockets``' binding), the
sliding-window refresh middleware, the video-upload gate and ``get_token_remaining_seconds`` (which look the name
up in ``token_service`` when they run). Wrapping it in those three modules makes a signed-out token invalid at all
of them — in particular the refresh middleware can never mint a fresh token from a signed-out one.

Apply this before ``auth_dependencies_api_keys``, which wraps whatever ``auth_dependencies.verify_token`` is when it
is applied (API keys have revocation of their own). Applying again replaces the previous check, never stacks.
"""

from __future__ import annotations

from collections.abc import Callable

from invokeai.app.services.auth.token_service import TokenData

_MARKER = "__invokeai_saas_token_revocation__"


def apply(is_revoked: Callable[[str], bool]) -> None:
    """Make ``verify_token`` answer None (stock's "invalid or expired") for a token ``is_revoked`` names. The check
    runs only for tokens stock accepted, so a forged or expired token costs no database read; a database error
    propagates (the request fails instead of letting a possibly signed-out token through)."""
    from invokeai.app.api import auth_dependencies, sockets
    from invokeai.app.services.auth import token_service

    stock: Callable[[str], TokenData | None] = getattr(token_service.verify_token, _MARKER, token_service.verify_token)

    def verify_token(token: str) -> TokenData | None:
        token_data = stock(token)
        if token_data is None or is_revoked(token):
            return None
        return token_data

    setattr(verify_token, _MARKER, stock)
    for module in (token_service, auth_dependencies, sockets):
        module.verify_token = verify_token
