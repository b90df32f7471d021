"""Stock routes a hosted deployment must not serve, answered with a clear refusal under the stock contract.

Two kinds, both checked on InvokeAI 6.14.2:

- Custom node packs (``invokeai.app.api.routers.custom_nodes``, prefix ``/v2/custom_nodes``): install clones a git
  repository and imports it, reload imports whatever is in the nodes folder, uninstall edits ``sys.modules`` and the
  invocation registry. All of it is arbitrary code in the API process (and, for graphs to use a pack, in every
  worker too), so in saas mode the operator installs packs with the image, never a user through the API. Listing
  stays: it only reads.
- In-process models (``invokeai.app.api.routers.utilities``, prefix ``/v1/utilities``): prompt expansion and
  image-to-prompt load a text or vision-language model inside the API process. With SQS dispatch, API processes
  never run models (their machines have no accelerator and the model cache lives on the workers), so these
  features are not available there.

Each override keeps the stock path, method, operation id, request body, parameters, response model and auth
dependency: the OpenAPI schema the studio reads stays as stock, anonymous callers still get stock's 401 and
non-admins stock's 403 before the refusal, and the refusal is one ``{"detail": ...}`` JSON body with nothing
from the server's internals in it.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, HTTPException, status
from invokeai.app.api.auth_dependencies import AdminUserOrDefault, CurrentUserOrDefault
from invokeai.app.api.routers.custom_nodes import (
    InstallNodePackRequest,
    InstallNodePackResponse,
    UninstallNodePackResponse,
)
from invokeai.app.api.routers.utilities import (
    ExpandPromptRequest,
    ExpandPromptResponse,
    ImageToPromptRequest,
    ImageToPromptResponse,
)

from invokeai_saas.config import SaasSettings

CUSTOM_NODES_REFUSED = (
    "Custom nodes are managed by the operator in hosted mode: a node pack runs code in every server process, "
    "so it is installed with the deployment, not through the API."
)
IN_PROCESS_MODEL_REFUSED = (
    "This feature is not available on this server: it would run a model inside the API process, and in this "
    "deployment models only run on the generation workers."
)

# The stock routers' own prefixes (see patches.api_app_route_overrides).
custom_node_refusals_router = APIRouter(prefix="/v2/custom_nodes", tags=["custom_nodes"])
in_process_model_refusals_router = APIRouter(prefix="/v1/utilities", tags=["utilities"])

_CUSTOM_NODES_RESPONSES: dict[int | str, dict[str, str]] = {
    status.HTTP_403_FORBIDDEN: {"description": "Refused: custom nodes are managed by the operator in hosted mode."}
}
_IN_PROCESS_MODEL_RESPONSES: dict[int | str, dict[str, str]] = {
    status.HTTP_403_FORBIDDEN: {"description": "Refused: this server does not run models in the API process."}
}


def _refuse_custom_nodes() -> HTTPException:
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=CUSTOM_NODES_REFUSED)


def _refuse_in_process_model() -> HTTPException:
    """403, not 409: the refusal is this deployment's standing policy, not a state of some resource that the
    caller could change and retry (409's meaning). Whoever asks, whenever, the answer is the same, and a client
    that shows the detail of a 403 shows the reason; the detail tells it apart from stock's admin-only 403."""
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=IN_PROCESS_MODEL_REFUSED)


@custom_node_refusals_router.post(
    "/install",
    operation_id="install_custom_node_pack",
    response_model=InstallNodePackResponse,
    responses=_CUSTOM_NODES_RESPONSES,
)
def install_custom_node_pack(
    current_admin: AdminUserOrDefault,
    request: InstallNodePackRequest = Body(description="The source URL to install from."),  # noqa: B008 - as stock
) -> InstallNodePackResponse:
    """Installs a custom node pack from a git URL by cloning it into the nodes directory."""
    raise _refuse_custom_nodes()


@custom_node_refusals_router.delete(
    "/{pack_name}",
    operation_id="uninstall_custom_node_pack",
    response_model=UninstallNodePackResponse,
    responses=_CUSTOM_NODES_RESPONSES,
)
def uninstall_custom_node_pack(current_admin: AdminUserOrDefault, pack_name: str) -> UninstallNodePackResponse:
    """Uninstalls a custom node pack by removing its directory."""
    raise _refuse_custom_nodes()


@custom_node_refusals_router.post(
    "/reload",
    operation_id="reload_custom_nodes",
    responses=_CUSTOM_NODES_RESPONSES,
)
def reload_custom_nodes(current_admin: AdminUserOrDefault) -> dict[str, str]:
    """Triggers a reload of all custom nodes."""
    raise _refuse_custom_nodes()


@in_process_model_refusals_router.post(
    "/expand-prompt",
    operation_id="expand_prompt",
    responses={200: {"model": ExpandPromptResponse}, **_IN_PROCESS_MODEL_RESPONSES},
)
async def expand_prompt(current_user: CurrentUserOrDefault, body: ExpandPromptRequest) -> ExpandPromptResponse:
    """Expand a brief prompt into a detailed image generation prompt using a text LLM."""
    raise _refuse_in_process_model()


@in_process_model_refusals_router.post(
    "/image-to-prompt",
    operation_id="image_to_prompt",
    responses={200: {"model": ImageToPromptResponse}, **_IN_PROCESS_MODEL_RESPONSES},
)
async def image_to_prompt(current_user: CurrentUserOrDefault, body: ImageToPromptRequest) -> ImageToPromptResponse:
    """Generate a descriptive prompt from an image using a vision-language model."""
    raise _refuse_in_process_model()


def refusal_overrides(settings: SaasSettings) -> list[APIRouter]:
    """The refusals that apply under ``settings``, for a ``saas_route_overrides`` hookimpl.

    Custom nodes are refused in every saas configuration. The model routes only when SQS dispatch is active:
    without it graphs run in the API process anyway, so it has the models and the stock routes stay.
    """
    routers = [custom_node_refusals_router]
    if settings.sqs_active:
        routers.append(in_process_model_refusals_router)
    return routers
