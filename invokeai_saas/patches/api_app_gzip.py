"""Upstream: ``invokeai.app.api_app._ContentTypeAwareGZipResponder.send_with_compression``.
Checked on 6.14.2 with starlette 1.10.

The defect: Starlette's GZip responder withholds ``http.response.start`` until it has seen the body,
unless it passes the response through untouched. InvokeAI's subclass decides *after* that moment
that a content type is not worth compressing and flips the pass-through flag, so the withheld start
message is never sent and the server answers 500. It reads the content type with Starlette's
``Headers``, which expects lower-case names; engine.io sends ``Content-Type``, so every Socket.IO
polling response from a client that accepts gzip (every browser) hits the defect, and the studio
never receives live events.

The fix, around the stock method: header names are lower-cased (as ASGI expects), and if the stock
code switched to pass-through without sending the start message, it is sent before anything else.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import wrapt
from starlette.types import Message


def apply(api_app_module: ModuleType) -> None:
    async def send_with_compression(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        message: Message = args[0] if args else kwargs["message"]
        if message["type"] != "http.response.start":
            await wrapped(*args, **kwargs)
            return
        message["headers"] = [(name.lower(), value) for name, value in message.get("headers", [])]
        real_send = instance.send
        start_sent = False

        async def recording_send(outgoing: Message) -> None:
            nonlocal start_sent
            if outgoing["type"] == "http.response.start":
                start_sent = True
            await real_send(outgoing)

        instance.send = recording_send
        try:
            await wrapped(*args, **kwargs)
        finally:
            instance.send = real_send
        if instance.content_type_is_excluded and not start_sent:
            await real_send(instance.initial_message)

    wrapt.wrap_function_wrapper(
        api_app_module, "_ContentTypeAwareGZipResponder.send_with_compression", send_with_compression
    )
