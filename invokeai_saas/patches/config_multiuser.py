"""Upstream: ``invokeai.app.services.config.config_default.get_config()`` — the cached, process-wide
``InvokeAIAppConfig``. Checked on InvokeAI 6.14.2.

Saas mode forces ``multiuser`` on: a hosted service without authentication would let anyone use
everyone's gallery and GPU time. The value is set on the cached singleton before the app is built,
so every reader (auth dependencies, sockets, routers) sees it.
"""

from __future__ import annotations

from invokeai.app.services.config.config_default import InvokeAIAppConfig


def apply(config: InvokeAIAppConfig) -> None:
    config.multiuser = True
