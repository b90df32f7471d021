"""Plan limits on stock routes other than enqueue: node editor access and the storage quota on uploads.

**Node editor** (``PlanLimits.node_editor``; Trial has none). The workflow editor reads and writes workflows through
stock's ``/api/v1/workflows`` routes, so those are refused (403) to a plan without it, route by route:

- refused: list, create, get, update, the counts and tags the library shows, the public flag (sharing), the
  thumbnail upload and the "opened" mark — every read or write the editor and library make;
- allowed: deleting a workflow or its thumbnail. Removing one's own data is never a paid feature; a user who moved
  to a plan without the editor can still clean up (their thumbnails count toward their storage). Stock's ownership
  rules still decide whose workflow may be deleted;
- allowed: ``GET /i/{workflow_id}/thumbnail``. Stock leaves it unauthenticated on purpose (browsers load it with an
  ``<img>`` tag, which sends no bearer token), so there is no user whose plan could be read; it serves only a
  thumbnail that was uploaded while the owner's plan included the editor.

A batch that carries a ``workflow`` (stock's ``Batch.workflow``) was built in the workflow editor: the studio
attaches it when a workflow runs from the Workflows tab (origin ``workflows``) or from the canvas workflow
integration (``canvas_workflow_integration``), never from the Generate, Canvas or Upscaling tabs (checked in the
6.14.2 bundle: their batches are ``{graph, runs, data, origin, destination}``). ``enforce_node_editor`` refuses such
a batch for a plan without the editor; the enqueue guard calls it. A graph sent without a workflow is an API call,
which ``api_access`` governs, not this rule.

**Storage quota** (``PlanLimits.storage_gb``, counted exactly per user in ``user_storage_usage`` when media is on
S3). Enqueue already refuses when storage is full (``invokeai_saas.credits.limits``); uploads of images and videos
are refused here (403) before their body is read, when the user's stored bytes are at or over the quota or when
the request's ``Content-Length`` would take them over it. The body length is the multipart request, a few hundred
bytes more than the file; what is stored may differ from what was sent (stock re-encodes images as PNG), so a user
may end past the quota by at most one upload, after which uploads and generations are refused until media is
deleted. A request without ``Content-Length`` (chunked) is judged on stored bytes alone. The small preview images
(workflow thumbnails, style preset images, model covers) are stored as 256-pixel WEBP thumbnails whatever the
upload, a few KB each, and are not guarded.

The route guards apply to every account, admins included, as the enqueue limits do: staff go on the internal
Tester plan. No ``from __future__ import annotations`` here: the guards' parameters are annotated with stock's auth
dependency, imported when the guards are built (it imports the API layer, which workers never load), and FastAPI
must read those annotations as objects.
"""

from fastapi import HTTPException, Request
from invokeai.app.services.session_queue.session_queue_common import Batch
from sqlalchemy import Engine

from invokeai_saas.credits.limits import NO_PLAN, UPGRADE, PlanLimitExceeded, plan_label, storage_refusal
from invokeai_saas.credits.plans import PlanService, Subscription
from invokeai_saas.patches.api_app_route_guards import RouteGuard
from invokeai_saas.storage.object_index import StorageObjectIndex

# Stock's workflow routes (``invokeai/app/api/routers/workflows.py``, the router's prefix included) that need the
# node editor, and those deliberately left open (see the module docstring); tests check that every stock workflow
# route is in one of the two, so a route added upstream gets a decision.
NODE_EDITOR_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/v1/workflows/"),
    ("POST", "/v1/workflows/"),
    ("GET", "/v1/workflows/i/{workflow_id}"),
    ("PATCH", "/v1/workflows/i/{workflow_id}"),
    ("PUT", "/v1/workflows/i/{workflow_id}/thumbnail"),
    ("PATCH", "/v1/workflows/i/{workflow_id}/is_public"),
    ("PUT", "/v1/workflows/i/{workflow_id}/opened_at"),
    ("GET", "/v1/workflows/tags"),
    ("GET", "/v1/workflows/counts_by_tag"),
    ("GET", "/v1/workflows/counts_by_category"),
)
OPEN_WORKFLOW_ROUTES: tuple[tuple[str, str], ...] = (
    ("DELETE", "/v1/workflows/i/{workflow_id}"),
    ("DELETE", "/v1/workflows/i/{workflow_id}/thumbnail"),
    ("GET", "/v1/workflows/i/{workflow_id}/thumbnail"),
)
UPLOAD_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/images/upload"),
    ("POST", "/v1/videos/upload"),
)


def node_editor_refusal(subscription: Subscription) -> PlanLimitExceeded | None:
    if subscription.limits.node_editor:
        return None
    return PlanLimitExceeded(403, f"{plan_label(subscription)} does not include the node editor (workflows). {UPGRADE}")


def enforce_node_editor(subscription: Subscription, batch: Batch) -> None:
    """Refuse (403) a batch built in the workflow editor (it carries ``workflow``) for a plan without the editor."""
    if batch.workflow is not None:
        refusal = node_editor_refusal(subscription)
        if refusal is not None:
            raise refusal


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class PlanAccess:
    """The reads the route guards make: the user's effective limits and stored bytes, fresh per request (an
    upgrade or a delete applies to the very next request)."""

    def __init__(self, engine: Engine) -> None:
        self._plans = PlanService(engine)
        self._index = StorageObjectIndex(engine)

    def subscription(self, user_id: str) -> Subscription:
        subscription = self._plans.subscription(user_id)
        if subscription is None:
            raise HTTPException(status_code=403, detail=NO_PLAN)
        return subscription

    def require_node_editor(self, user_id: str) -> None:
        refusal = node_editor_refusal(self.subscription(user_id))
        if refusal is not None:
            raise refusal.to_http()

    def require_storage_for(self, user_id: str, incoming: int | None) -> None:
        subscription = self.subscription(user_id)
        used, _ = self._index.usage(user_id)
        refusal = storage_refusal(subscription, used, incoming, "upload more")
        if refusal is not None:
            raise refusal.to_http()


def route_guards(engine: Engine) -> list[RouteGuard]:
    """The guards for ``invokeai_saas.patches.api_app_route_guards.apply``; call when the API app is built."""
    from invokeai.app.api.auth_dependencies import CurrentUserOrDefault

    access = PlanAccess(engine)

    def require_node_editor(current_user: CurrentUserOrDefault) -> None:
        access.require_node_editor(current_user.user_id)

    def require_storage_for_upload(request: Request, current_user: CurrentUserOrDefault) -> None:
        access.require_storage_for(current_user.user_id, _content_length(request))

    guards: list[RouteGuard] = [RouteGuard(path, frozenset({m}), require_node_editor) for m, path in NODE_EDITOR_ROUTES]
    guards += [RouteGuard(path, frozenset({m}), require_storage_for_upload) for m, path in UPLOAD_ROUTES]
    return guards
