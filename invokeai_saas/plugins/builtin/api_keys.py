"""The api_keys plugin: who a bearer token stands for, when ``database_url`` is set (keys and signed-out sessions
live in PostgreSQL).

``saas_routers`` adds the signed-in user's key routes (``invokeai_saas/auth/router.py``); ``saas_route_overrides``
replaces stock's no-op logout with one that signs the token out (``invokeai_saas/auth/logout.py``);
``saas_configure_app`` makes stock's token check refuse signed-out tokens
(``invokeai_saas/patches/token_service_revocation.py``, read once per request:
``invokeai_saas/patches/api_app_token_verdicts.py``) and its bearer-token dependencies accept API keys
(``invokeai_saas/patches/auth_dependencies_api_keys.py``), each use allowed while the owner's plan includes API
access when plan limits are enforced (``credits_enforced``).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from invokeai_saas.config import SaasSettings
from invokeai_saas.plugins.markers import hookimpl


@hookimpl
def saas_routers(saas_config: SaasSettings) -> list[APIRouter]:
    if saas_config.database_url is None:
        return []
    from invokeai_saas.auth.router import api_keys_router  # imports stock's auth: only at app import

    return [api_keys_router]


@hookimpl
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    if saas_config.database_url is None:
        return []
    from invokeai_saas.auth.logout import logout_router  # imports stock's auth router: only at app import

    return [logout_router]


@hookimpl
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    if saas_config.database_url is None:
        return
    from invokeai.app.api import auth_dependencies

    from invokeai_saas.auth.api_key_auth import ApiKeyAuthenticator
    from invokeai_saas.auth.api_keys import ApiKeyService
    from invokeai_saas.auth.sessions import TokenRevocations
    from invokeai_saas.credits.plans import PlanService
    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.patches import api_app_token_verdicts, auth_dependencies_api_keys, token_service_revocation

    engine = get_engine(saas_config)
    # First the revocation check, then the API-key seam, which wraps whatever auth_dependencies holds by then.
    token_service_revocation.apply(TokenRevocations(engine).is_revoked)
    api_app_token_verdicts.apply(app)
    authenticator = ApiKeyAuthenticator(ApiKeyService(engine), PlanService(engine), saas_config.credits_enforced)
    auth_dependencies_api_keys.apply(auth_dependencies, authenticator)
