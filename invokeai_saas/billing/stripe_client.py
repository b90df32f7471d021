"""A ``stripe.StripeClient`` bound to the configured key and API base (Stripe itself, or a stand-in)."""

from __future__ import annotations

import stripe

from invokeai_saas.config import SaasSettings


def stripe_client(settings: SaasSettings) -> stripe.StripeClient:
    if settings.stripe_api_key is None:
        raise ValueError("stripe_api_key is not configured")
    kwargs: dict[str, object] = {"max_network_retries": 1, "http_client": stripe.RequestsClient(timeout=10)}
    if settings.stripe_api_base:
        base = settings.stripe_api_base.rstrip("/")
        kwargs["base_addresses"] = {"api": base, "files": base, "connect": base, "meter_events": base}
    return stripe.StripeClient(settings.stripe_api_key.get_secret_value(), **kwargs)  # type: ignore[arg-type]
