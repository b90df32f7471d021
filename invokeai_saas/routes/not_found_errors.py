"""A stock route that answers 500 because the object the request names does not exist answers 404 instead.

Some stock handlers look an object up inside ``try: ... except Exception: raise HTTPException(500, ...)`` without a
``not found`` branch first (e.g. ``DELETE /api/v1/board_images/`` with an unknown image name: "Failed to remove image
from board"), so a request naming an image, board or workflow that does not exist, or that the caller may not see,
is told the server failed. The services raise their own not-found exceptions (the PostgreSQL ones raise stock's
types), so the handler looks at the exception the route caught, the 500's direct cause or context (deeper links
are left alone: there the not-found was handled and something else failed), and answers 404 with a fixed message
when it is one of them; anything else goes to the previous handler unchanged. Other stock handlers let the
service's not-found exception escape (e.g. ``POST /api/v1/images/download`` with an unknown ``board_id`` names the
archive after the board before anything checks it exists): those answer the same 404. Another tenant's object is
already reported as not found by the services, so the answer reveals nothing about it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from invokeai_saas.exception_handlers import answer_http_exceptions

NOT_FOUND_DETAIL = "Not found: the request names an object that does not exist."


def not_found_types() -> tuple[type[BaseException], ...]:
    """Stock's exceptions for a record a request named that does not exist (imported when the app is built)."""
    from invokeai.app.services.board_records.board_records_common import BoardRecordNotFoundException
    from invokeai.app.services.image_records.image_records_common import ImageRecordNotFoundException
    from invokeai.app.services.model_install.model_install_common import UnknownInstallJobException
    from invokeai.app.services.model_records.model_records_base import UnknownModelException
    from invokeai.app.services.session_queue.session_queue_common import SessionQueueItemNotFoundError
    from invokeai.app.services.style_preset_records.style_preset_records_common import StylePresetNotFoundError
    from invokeai.app.services.system_prompt_records.system_prompt_records_common import SystemPromptNotFoundError
    from invokeai.app.services.video_records.video_records_common import VideoRecordNotFoundException
    from invokeai.app.services.workflow_records.workflow_records_common import WorkflowNotFoundError

    return (
        BoardRecordNotFoundException,
        ImageRecordNotFoundException,
        SessionQueueItemNotFoundError,
        StylePresetNotFoundError,
        SystemPromptNotFoundError,
        UnknownInstallJobException,
        UnknownModelException,
        VideoRecordNotFoundException,
        WorkflowNotFoundError,
    )


def install_not_found_handler(app: FastAPI) -> None:
    """Wrap the app's ``HTTPException`` handler; call before the first request."""
    kinds = not_found_types()

    def not_found_answer(request: Request, error: Exception) -> Response | None:
        caught = error.__cause__ or error.__context__
        if getattr(error, "status_code", 0) >= 500 and isinstance(caught, kinds):
            return JSONResponse(status_code=404, content={"detail": NOT_FOUND_DETAIL})
        return None

    answer_http_exceptions(app, not_found_answer)

    async def on_not_found(request: Request, error: Exception) -> Response:
        return JSONResponse(status_code=404, content={"detail": NOT_FOUND_DETAIL})

    for kind in kinds:
        app.add_exception_handler(kind, on_not_found)
