"""Accepting API keys where stock accepts its bearer token, while the owner's plan includes API access.

``ApiKeyAuthenticator`` is what the ``verify_token`` seam (``invokeai_saas.patches.auth_dependencies_api_keys``)
calls for a bearer token that is an API key: the owner's token data (so stock's own checks — account active,
``system`` refused — and every route's ownership rules apply unchanged), None for an unknown or revoked key (stock
answers 401), or HTTP 403 when the owner's plan has no API access (with plan limits enforced). The plan is read on
every request, so a downgrade or an upgrade applies to the very next call.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from invokeai.app.services.auth.token_service import TokenData

from invokeai_saas.auth.api_keys import ApiKeyService
from invokeai_saas.credits.limits import UPGRADE
from invokeai_saas.credits.plans import PlanService


def api_access_refusal(plan_name: str | None) -> HTTPException:
    plan = f"Your plan ({plan_name})" if plan_name else "Your account"
    return HTTPException(
        status_code=status.HTTP_403_FORBIDDEN,
        detail=f"{plan} does not include API access (API keys). {UPGRADE}",
    )


def require_api_access(plans: PlanService, user_id: str) -> None:
    """Raise the 403 unless the user's effective plan limits include API access."""
    subscription = plans.subscription(user_id)
    if subscription is None or not subscription.limits.api_access:
        raise api_access_refusal(subscription.plan.name if subscription is not None else None)


class ApiKeyAuthenticator:
    def __init__(self, keys: ApiKeyService, plans: PlanService, enforce_plan: bool) -> None:
        self._keys = keys
        self._plans = plans
        self._enforce_plan = enforce_plan

    def __call__(self, secret: str) -> TokenData | None:
        owner = self._keys.authenticate(secret)
        if owner is None:
            return None
        if self._enforce_plan:
            require_api_access(self._plans, owner.user_id)
        return TokenData(
            user_id=owner.user_id,
            email=owner.email,
            is_admin=owner.is_admin,
            remember_me=False,
            token_epoch=owner.token_epoch,
        )
