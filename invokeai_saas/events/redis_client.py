"""A Redis client from the saas settings, with timeouts so a dead Redis fails fast instead of hanging."""

from __future__ import annotations

import redis

from invokeai_saas.config import SaasSettings


def redis_client(settings: SaasSettings) -> redis.Redis:
    if settings.redis_url is None:
        raise ValueError("redis_url is not configured")
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
