"""Answering some errors before the app's own exception handlers, and leaving every other error to them.

Several saas causes (a database or object-store outage, a credit refusal, a bad batch value, a name too long, a
not-found behind a stock 500) reach the app only as an ``HTTPException`` or an unhandled exception with the cause
in its chain (``invokeai_saas.exception_chain``). Each is answered by a small function that returns a response for
the errors it knows and ``None`` for the rest; these wrappers install it in front of the handler the app had, so
the handlers stack, each passing on what it does not know, unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]
# A response for the errors one handler knows, None for those the previous handler answers.
Answer = Callable[[Request, Exception], Response | None]


def internal_server_error() -> Response:
    """What an unhandled exception answers when no handler before knew it."""
    return JSONResponse(status_code=500, content={"detail": "Internal Server Error"})


async def call_handler(handler: Handler, request: Request, error: Exception) -> Response:
    """An exception handler's response, whether the handler is sync or async (Starlette takes both)."""
    result = handler(request, error)
    return await result if isinstance(result, Awaitable) else result


def answer_http_exceptions(app: FastAPI, answer: Answer) -> None:
    """Ask ``answer`` first about every ``HTTPException``; call before the first request (Starlette builds its
    middleware stack, handlers included, on the first request)."""
    previous: Handler = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)

    async def on_http_exception(request: Request, error: Exception) -> Response:
        response = answer(request, error)
        return response if response is not None else await call_handler(previous, request, error)

    app.add_exception_handler(StarletteHTTPException, on_http_exception)


def answer_unhandled_exceptions(
    app: FastAPI, answer: Answer, otherwise: Callable[[], Response] = internal_server_error
) -> None:
    """Ask ``answer`` first about every exception no route or handler caught; what it does not know goes to the
    app's previous handler, or ``otherwise`` when it had none. Call before the first request."""
    previous: Handler | None = app.exception_handlers.get(Exception)

    async def on_unhandled(request: Request, error: Exception) -> Response:
        response = answer(request, error)
        if response is not None:
            return response
        return await call_handler(previous, request, error) if previous is not None else otherwise()

    app.add_exception_handler(Exception, on_unhandled)
