"""Upstream: ``starlette.requests.Request.json``. Checked with starlette 1.10 under FastAPI 0.141 (InvokeAI 6.14.2).

Every JSON request body reaches a stock route through this one method: FastAPI's request handler calls it for any
``application/json`` (or ``+json``) body before validating the route's parameters, and routes that read a body
themselves call it too. Wrapping it makes that one parse the strict one (``invokeai_saas.routes.bad_input``): NUL
characters, lone surrogates, integers outside ``bigint``, ``NaN`` and infinities are refused with FastAPI's own 422
shape (FastAPI re-raises an ``HTTPException`` from the body read as it is), and a body is still parsed once.
"""

from __future__ import annotations

from typing import Any

import wrapt
from starlette.requests import Request

from invokeai_saas.routes.bad_input import BadInput, strict_json_loads

_APPLIED = "_invokeai_saas_strict_json_applied"


def apply() -> None:
    """Wrap ``Request.json`` once per process (a second call changes nothing)."""
    if vars(Request).get(_APPLIED, False):
        return

    async def json(wrapped: Any, instance: Request, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not hasattr(instance, "_json"):  # stock's cache: set here, so the stock method returns it unparsed
            body = await instance.body()
            try:
                instance._json = strict_json_loads(body)
            except BadInput as refused:
                raise refused.to_http() from None
        return await wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(Request, "json", json)
    setattr(Request, _APPLIED, True)
