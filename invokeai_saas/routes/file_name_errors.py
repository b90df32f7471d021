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

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from invokeai_saas.exception_chain import find_in_chain
from invokeai_saas.exception_handlers import answer_http_exceptions, answer_unhandled_exceptions

NAME_TOO_LONG_DETAIL = "A file name or path in the request is too long."


def _name_too_long(error: BaseException) -> bool:
    found = find_in_chain(error, OSError)
    return found is not None and found.errno == errno.ENAMETOOLONG


def _too_long_answer(request: Request, error: Exception) -> Response | None:
    if _name_too_long(error):
        return JSONResponse(status_code=422, content={"detail": NAME_TOO_LONG_DETAIL})
    return None


def _server_error_too_long_answer(request: Request, error: Exception) -> Response | None:
    if getattr(error, "status_code", 0) >= 500:  # a 4xx stock chose stays
        return _too_long_answer(request, error)
    return None


def install_file_name_error_handlers(app: FastAPI) -> None:
    """Wrap the app's ``HTTPException`` and unhandled-exception handlers; call before the first request."""
    answer_http_exceptions(app, _server_error_too_long_answer)
    answer_unhandled_exceptions(app, _too_long_answer)
