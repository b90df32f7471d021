"""A batch value its node refuses answers 422 naming the node and field, whichever enqueue route met it.

The session queue checks batch values before storing anything (``invokeai_saas.services.session_queue.batch_values``)
and raises ``InvalidBatchValues``. Stock's enqueue route turns every exception into a 500, and so does the metered
enqueue route for anything that is not a credit refusal (``invokeai_saas.credits.enqueue_route``); the refusal is
still in the chain (``HTTPException.__context__``/``__cause__``), so this handler finds it there and answers with
FastAPI's own validation-error shape (``detail``: a list of ``loc``/``msg``/``type``), which clients already read
for every other 422. Anything else goes to the previous handler unchanged.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from invokeai_saas.exception_chain import find_in_chain
from invokeai_saas.exception_handlers import answer_http_exceptions
from invokeai_saas.services.session_queue.batch_values import InvalidBatchValues


def _refused_values_answer(request: Request, error: Exception) -> Response | None:
    refused = find_in_chain(error, InvalidBatchValues)
    if refused is not None:
        return JSONResponse(status_code=422, content={"detail": refused.errors})
    return None


def install_batch_value_error_handler(app: FastAPI) -> None:
    """Wrap the app's ``HTTPException`` handler; call before the first request."""
    answer_http_exceptions(app, _refused_values_answer)
