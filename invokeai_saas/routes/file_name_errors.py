"""A file name or path in a request that the file system refuses as too long answers 422, whichever route met it.

Stock routes that take a name or path from the request and look it up on disk (``GET /api/v1/utilities/fonts/
{font_path}``, the model manager's folder scan and install from a local path) check that it exists, but a name
longer than the file system allows (255 bytes per component on Linux) makes that check itself raise ``OSError``
(``ENAMETOOLONG``), which stock answers 500 or lets escape. Such a name cannot exist, so it is the request that is
wrong: the handler finds the error in the exception chain (as ``invokeai_saas.routes.outages`` does for the
database) and answers 422 with a fixed message; anything else goes to the previous handler unchanged.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from invokeai_saas.exception_chain import find_in_chain

NAME_TOO_LONG_DETAIL = "A file name or path in the request is too long."

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]


def _name_too_long(error: BaseException) -> bool:
    found = find_in_chain(error, OSError)
    return found is not None and found.errno == errno.ENAMETOOLONG


async def _answer(previous: Handler, request: Request, error: Exception) -> Response:
    result = previous(request, error)
    return await result if isinstance(result, Awaitable) else result


def install_file_name_error_handlers(app: FastAPI) -> None:
    """Wrap the app's ``HTTPException`` and unhandled-exception handlers; call before the first request."""
    previous_http: Handler = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)
    previous_unhandled: Handler | None = app.exception_handlers.get(Exception)

    async def on_http_exception(request: Request, error: Exception) -> Response:
        if getattr(error, "status_code", 0) >= 500 and _name_too_long(error):  # a 4xx stock chose stays
            return JSONResponse(status_code=422, content={"detail": NAME_TOO_LONG_DETAIL})
        return await _answer(previous_http, request, error)

    async def on_unhandled(request: Request, error: Exception) -> Response:
        if _name_too_long(error):
            return JSONResponse(status_code=422, content={"detail": NAME_TOO_LONG_DETAIL})
        if previous_unhandled is not None:
            return await _answer(previous_unhandled, request, error)
        return JSONResponse(status_code=500, content={"detail": "Internal Server Error"})

    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(Exception, on_unhandled)
