"""Request limits every route gets in saas mode, checked before routing: bad query and path values (422) and the
size of request bodies other than uploads (413).

Query and path values follow ``invokeai_saas.routes.bad_input`` (no NUL, no lone surrogate, decimal integers
within ``bigint``). JSON bodies are checked in the one place they are parsed
(``invokeai_saas.patches.starlette_request_json``), not here, so a body is parsed once.

**Body size.** Stock accepts a JSON body of any size: a 40 MB workflow or graph was stored whole, outside any
quota. Every request body that is not ``multipart/form-data`` (JSON, forms, anything else a route reads) may be at
most ``max_json_body_bytes``; a larger one is answered 413 with a message as soon as it is known: from
``Content-Length`` before anything is read, or, for a chunked body, as soon as the bytes received pass the limit
(nothing more is read, and the connection is closed, as stock's upload limit does). The body is otherwise handed
on untouched. Uploads (multipart) keep their own limits: the storage quota (``invokeai_saas.credits.access``) and
stock's video upload limit, and their bytes are never inspected here.

The middleware sits innermost (next to the routes), so its answers carry the CORS headers of every other answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invokeai_saas.http_middleware import HttpOnlyMiddleware
from invokeai_saas.routes.bad_input import BadInput, check_parameter

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


def _query_values(query_string: bytes) -> Iterator[tuple[tuple[str, str], str]]:
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        yield ("query", name[:100]), name
        yield ("query", name[:100]), value


def check_request_target(scope: Scope) -> None:
    """Every path segment and query name and value (``BadInput`` for the first bad one)."""
    for segment in str(scope.get("path", "")).split("/"):
        check_parameter(("path", segment[:100]), segment)
    for where, value in _query_values(scope.get("query_string", b"")):
        check_parameter(where, value)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        status_code=413,
        content={"detail": f"Request body too large: at most {limit} bytes (uploads of files have their own limit)"},
        headers={"Connection": "close"},
    )


class RequestLimitsMiddleware(HttpOnlyMiddleware):
    """Refuse bad query and path values and oversized non-upload bodies before the app routes the request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        super().__init__(app)
        self.max_body_bytes = max_body_bytes

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check_request_target(scope)
        except BadInput as refused:
            response = JSONResponse(status_code=422, content={"detail": refused.to_http().detail})
            await response(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").lower()
        if scope.get("method") in _BODYLESS and "content-length" not in headers and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        if content_type.startswith("multipart/form-data"):
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _too_large(self.max_body_bytes)(scope, receive, send)
            return
        body = await self._read_bounded(receive)
        if body is None:
            await _too_large(self.max_body_bytes)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        """The whole body, or None once more than the limit has arrived (the rest is left unread)."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees an empty body and then this
                return b"".join(chunks)
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then whatever the client sends next (a
    disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def install_request_limits(app: FastAPI, max_body_bytes: int) -> None:
    """Add the middleware innermost (after every middleware stock added); call before the first request."""
    app.user_middleware.append(Middleware(RequestLimitsMiddleware, max_body_bytes=max_body_bytes))
