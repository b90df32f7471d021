"""Credit and plan refusals answer with their own status, whichever stock route met them.

The hold and the plan checks run inside the session queue, so any stock route that makes items runnable meets
them: ``enqueue_batch`` (overridden, see ``enqueue_route``) and ``retry_items_by_id``, which turns every exception
into HTTP 500 with the exception's text. This handler finds the refusal in the error's chain and answers 402
(``InsufficientCredits``) or the limit's 403/429 with the same user-facing messages as the enqueue route;
anything else is answered by the previous handler, unchanged.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from invokeai_saas.credits.ledger import InsufficientCredits
from invokeai_saas.credits.limits import PlanLimitExceeded
from invokeai_saas.exception_chain import find_in_chain
from invokeai_saas.exception_handlers import answer_http_exceptions


def _refusal_answer(request: Request, error: Exception) -> Response | None:
    limit = find_in_chain(error, PlanLimitExceeded)
    if limit is not None:
        return JSONResponse(status_code=limit.status_code, content={"detail": limit.detail})
    credits = find_in_chain(error, InsufficientCredits)
    if credits is not None:
        return JSONResponse(status_code=402, content={"detail": str(credits)})
    return None


def install_credit_error_handler(app: FastAPI) -> None:
    """Wrap the app's ``HTTPException`` handler; call before the first request."""
    answer_http_exceptions(app, _refusal_answer)
