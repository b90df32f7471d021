"""Upstream: ``invokeai.app.services.config.config_default.get_config()`` — the cached, process-wide
``InvokeAIAppConfig``. Checked on InvokeAI 6.14.2.

Saas mode forces ``multiuser`` on: a hosted service without authentication would let anyone use
everyone's gallery and GPU time. It forces ``strict_password_checking`` on too: every stock route that
sets a password (``/auth/setup``, admin create and update, ``PATCH /auth/me``) passes it to the user
service, so the API holds to the rule ``invokeai-saas user`` applies (8+ characters with upper case,
lower case and a digit) instead of accepting any non-empty password, and ``/auth/status`` tells the
studio so. The values are set on the cached singleton before the app is built, so every reader (auth
dependencies, sockets, routers) sees them.
"""

from __future__ import annotations

from invokeai.app.services.config.config_default import InvokeAIAppConfig


def apply(config: InvokeAIAppConfig) -> None:
    config.multiuser = True
    config.strict_password_checking = True
