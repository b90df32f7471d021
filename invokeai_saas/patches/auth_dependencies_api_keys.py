"""Upstream: ``invokeai.app.api.auth_dependencies.verify_token`` (imported there from
``invokeai.app.services.auth.token_service``). Checked on 6.14.2.

Every REST route that takes stock's bearer token reaches it through ``get_current_user``,
``get_current_user_or_default`` or the media-user dependencies in ``auth_dependencies``, and each of them calls the
module's own ``verify_token`` name, then ``resolve_authorized_user``. Rebinding that one name lets an API key stand
where a JWT stands on those routes, with stock's account checks still applied after it. Only that module's binding
changes: ``token_service.verify_token`` itself stays JWT-only, so the sliding-window refresh middleware never mints a
JWT from an API key, and the Socket.IO handshake and the video-upload gate (which import it from
``token_service``) keep to the studio's JWT: live events and video uploads are studio features.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from invokeai.app.services.auth.token_service import TokenData

from invokeai_saas.auth.api_keys import is_api_key

_MARKER = "__invokeai_saas_api_keys__"


def apply(module: ModuleType, authenticate: Callable[[str], TokenData | None]) -> None:
    """Make ``module.verify_token`` send API keys to ``authenticate`` and anything else to stock. Applying again
    replaces the previous authenticator (a new app in the same process), never stacks."""
    stock: Callable[[str], TokenData | None] = getattr(module.verify_token, _MARKER, module.verify_token)

    def verify_token(token: str) -> TokenData | None:
        if is_api_key(token):
            return authenticate(token)
        return stock(token)

    setattr(verify_token, _MARKER, stock)
    module.verify_token = verify_token
