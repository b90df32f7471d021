"""Accepting API keys where stock accepts its bearer token, while the owner's plan includes API access.

``ApiKeyAuthenticator`` is what the ``verify_token`` seam (``invokeai_saas.patches.auth_dependencies_api_keys``)
calls for a bearer token that is an API key: the owner's token data (so stock's own checks — account active,
``system`` refused — and every route's ownership rules apply unchanged), None for an unknown or revoked key (stock
answers 401), or HTTP 403 when the owner's plan has no API access (with plan limits enforced) or the owner is an
administrator. The plan is read on
every request, so a downgrade or an upgrade applies to the very next call.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from invokeai.app.services.auth.token_service import TokenData

from invokeai_saas.auth.api_keys import ApiKeyService
from invokeai_saas.credits.limits import NO_PLAN, UPGRADE, plan_label
from invokeai_saas.credits.plans import PlanService

ADMIN_KEYS_REFUSED = (
    "Administrator accounts cannot use API keys: a leaked key would carry every administrator right. Use a "
    "non-administrator account for scripts."
)


def admin_keys_refusal() -> HTTPException:
    """Stock derives the admin flag from the account on every request, not from the credential, so a key of an
    administrator would act as one (reset passwords, create administrators). Keys are for non-administrators."""
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=ADMIN_KEYS_REFUSED)


def require_api_access(plans: PlanService, user_id: str) -> None:
    """Raise the 403 unless the user's effective plan limits include API access (naming the plan, and where to find
    one with it)."""
    subscription = plans.subscription(user_id)
    if subscription is None:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=NO_PLAN)
    if not subscription.limits.api_access:
        detail = f"{plan_label(subscription)} does not include API access (API keys). {UPGRADE}"
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=detail)


class ApiKeyAuthenticator:
    """Called with an API key's secret: its owner's token data, None (stock's 401), or a 403 (see the module)."""

    def __init__(self, keys: ApiKeyService, plans: PlanService, enforce_plan: bool) -> None:
        self._keys = keys
        self._plans = plans
        self._enforce_plan = enforce_plan

    def __call__(self, secret: str) -> TokenData | None:
        owner = self._keys.authenticate(secret)
        if owner is None:
            return None
        if owner.is_admin:  # promoted since the key was made
            raise admin_keys_refusal()
        if self._enforce_plan:
            require_api_access(self._plans, owner.user_id)
        return TokenData(
            user_id=owner.user_id,
            email=owner.email,
            is_admin=owner.is_admin,
            remember_me=False,
            token_epoch=owner.token_epoch,
        )
