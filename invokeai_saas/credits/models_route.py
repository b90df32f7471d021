"""Stock's model read routes (``invokeai.app.api.routers.model_manager``, prefix ``/v2/models``) under the stock
contract, showing a user only the models their plan includes.

The plan's ``model_access`` (``invokeai_saas.credits.limits.model_allowed``) decides which bases a user sees:
``sd_only`` (Trial) SD 1.x, 2.x and SDXL; ``flux_included`` (Starter) those and FLUX; ``full`` every base. The rule:

- models of base ``any`` (CLIP and T5 encoders, CLIP Vision, spandrel upscalers...) are seen by everyone: they
  belong to no one family, SD graphs load them as much as FLUX ones, and enqueue never refuses them;
- administrators see every model whatever their own plan: they manage the catalogue, and the model manager UI
  lists, edits and deletes through these same routes;
- everyone else sees a model only if their plan includes its base; a user without a subscription (none exists for
  a live account: a trigger gives every new user one) sees only ``any`` models, as enqueue refuses them everything.

Enqueue is where the limit is enforced (``enforce_model_access`` checks every model a graph uses); these routes
make what the studio offers agree with it, so a user is never offered a model they cannot generate with. Which
read routes are overridden, and why:

- ``GET /`` (``list_model_records``): the model list every picker is filled from;
- ``GET /missing`` (``list_missing_models``): a list of models too (the studio subtracts it from the model list);
  unfiltered it would name the catalogue's excluded models to any user;
- ``GET /i/{key}``, ``GET /get_by_attrs`` and ``GET /get_by_hash``: the lookups through which the studio turns a
  stored reference (recalled image metadata, a loaded workflow, a model's default settings) into a selectable model.
  Answering them for an excluded model would put that model in the user's pickers through the back door, and lets
  anyone probe the catalogue by name; for a non-admin they answer exactly as for a model that does not exist
  (stock's 404 and detail), so the answer does not even tell an excluded model from a missing one.

Left as stock: ``GET /i/{key}/image`` (model covers are served without authentication, as stock, so there is no
user to filter for; a key is an unguessable UUID) and the model relationship and recall-parameter routes, which
return model keys only: the studio resolves a key through the routes above, so an excluded key resolves to nothing.
Everything else in the router is admin-only.

Each route reads the caller's plan at most once (none for an administrator), and queries the records as stock
does; the list skips the query of any requested base the plan excludes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from invokeai.app.api.auth_dependencies import CurrentUserOrDefault
from invokeai.app.api.dependencies import ApiDependencies
from invokeai.app.api.routers.model_manager import (
    ModelsList,
    example_model_config,
    prepare_model_config_for_response,
)
from invokeai.app.api.routers.model_manager import list_missing_models as stock_list_missing_models
from invokeai.app.services.auth.token_service import TokenData
from invokeai.app.services.model_records import ModelRecordOrderBy, UnknownModelException
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.backend.model_manager.configs.factory import AnyModelConfig
from invokeai.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType

from invokeai_saas.credits.estimate import enum_value
from invokeai_saas.credits.limits import ANY_BASE, model_allowed
from invokeai_saas.credits.plans import PlanService
from invokeai_saas.db.engine import autocommit_reads, get_engine
from invokeai_saas.runtime import current_runtime

# The stock router's own prefix (see patches.api_app_route_overrides).
models_router = APIRouter(prefix="/v2/models", tags=["model_manager"])

# Stock's 404 details, so an excluded model reads exactly as a missing one.
NOT_FOUND_BY_ATTRS = "No model found with these attributes"
NOT_FOUND_BY_HASH = "No model found with this hash"
NOT_FOUND_BY_KEY = str(UnknownModelException("model not found"))


def visible_bases(user: TokenData) -> Callable[[BaseModelType | str], bool]:
    """Whether ``user`` sees models of a base; reads the user's plan once (never for an administrator)."""
    if user.is_admin:
        return lambda base: True
    subscription = PlanService(autocommit_reads(get_engine(current_runtime().settings))).subscription(user.user_id)
    if subscription is None:
        return lambda base: enum_value(base) == ANY_BASE
    access = subscription.limits.model_access
    return lambda base: model_allowed(access, enum_value(base))


@models_router.get(
    "/",
    operation_id="list_model_records",
)
def list_model_records(
    current_user: CurrentUserOrDefault,
    base_models: Annotated[list[BaseModelType] | None, Query(description="Base models to include")] = None,
    model_type: Annotated[ModelType | None, Query(description="The type of model to get")] = None,
    model_name: Annotated[str | None, Query(description="Exact match on the name of the model")] = None,
    model_format: Annotated[
        ModelFormat | None, Query(description="Exact match on the format of the model (e.g. 'diffusers')")
    ] = None,
    order_by: Annotated[ModelRecordOrderBy, Query(description="The field to order by")] = ModelRecordOrderBy.Name,
    direction: Annotated[SQLiteDirection, Query(description="The direction to order by")] = SQLiteDirection.Ascending,
) -> ModelsList:
    """Get a list of models.

    As stock, with only the models the caller's plan includes (administrators see them all). Requested bases are
    queried once each, in the order given (a repeated base is queried once: stock would list its models twice)."""
    visible = visible_bases(current_user)
    store = ApiDependencies.invoker.services.model_manager.store
    filters = {"model_type": model_type, "model_name": model_name, "model_format": model_format}
    found: list[AnyModelConfig] = []
    if base_models:
        for base_model in dict.fromkeys(base_models):
            if visible(base_model):
                found.extend(
                    store.search_by_attr(base_model=base_model, order_by=order_by, direction=direction, **filters)
                )
    else:
        found = [m for m in store.search_by_attr(order_by=order_by, direction=direction, **filters) if visible(m.base)]
    return ModelsList(models=[prepare_model_config_for_response(m, ApiDependencies) for m in found])


@models_router.get(
    "/missing",
    operation_id="list_missing_models",
    responses={200: {"description": "List of models with missing files"}},
)
def list_missing_models(current_user: CurrentUserOrDefault) -> ModelsList:
    """Get models whose files are missing from disk.

    These are models that have database entries but their corresponding
    weight files have been deleted externally (not via Model Manager).

    Available to any authenticated user, not just admins: the frontend's model hooks subtract this
    set from the model list so unusable models are kept out of the generation dropdowns.

    Only the models the caller's plan includes (administrators see them all)."""
    visible = visible_bases(current_user)
    missing = stock_list_missing_models(current_user)
    return ModelsList(models=[m for m in missing.models if visible(m.base)])


@models_router.get(
    "/get_by_attrs",
    operation_id="get_model_records_by_attrs",
    response_model=AnyModelConfig,
)
def get_model_records_by_attrs(
    current_user: CurrentUserOrDefault,
    name: Annotated[str, Query(description="The name of the model")],
    type: Annotated[ModelType, Query(description="The type of the model")],
    base: Annotated[BaseModelType, Query(description="The base model of the model")],
) -> AnyModelConfig:
    """Gets a model by its attributes. The main use of this route is to provide backwards compatibility with the old
    model manager, which identified models by a combination of name, base and type.

    A base the caller's plan excludes answers 404, as for no model, without a query."""
    if not visible_bases(current_user)(base):
        raise HTTPException(status_code=404, detail=NOT_FOUND_BY_ATTRS)
    configs = ApiDependencies.invoker.services.model_manager.store.search_by_attr(
        base_model=base, model_type=type, model_name=name
    )
    if not configs:
        raise HTTPException(status_code=404, detail=NOT_FOUND_BY_ATTRS)
    return prepare_model_config_for_response(configs[0], ApiDependencies)


@models_router.get(
    "/get_by_hash",
    operation_id="get_model_records_by_hash",
    response_model=AnyModelConfig,
)
def get_model_records_by_hash(
    current_user: CurrentUserOrDefault,
    hash: Annotated[str, Query(description="The hash of the model")],
) -> AnyModelConfig:
    """Gets a model by its hash. This is useful for recalling models that were deleted and reinstalled,
    as the hash remains stable across reinstallations while the key (UUID) changes.

    The first model with the hash whose base the caller's plan includes; 404 (as for none) if there is none."""
    visible = visible_bases(current_user)
    configs = ApiDependencies.invoker.services.model_manager.store.search_by_hash(hash)
    config = next((c for c in configs if visible(c.base)), None)
    if config is None:
        raise HTTPException(status_code=404, detail=NOT_FOUND_BY_HASH)
    return prepare_model_config_for_response(config, ApiDependencies)


@models_router.get(
    "/i/{key}",
    operation_id="get_model_record",
    responses={
        200: {
            "description": "The model configuration was retrieved successfully",
            "content": {"application/json": {"example": example_model_config}},
        },
        400: {"description": "Bad request"},
        404: {"description": "The model could not be found"},
    },
)
def get_model_record(
    current_user: CurrentUserOrDefault,
    key: Annotated[str, Path(description="Key of the model record to fetch.")],
) -> AnyModelConfig:
    """Get a model record

    A model whose base the caller's plan excludes answers 404, exactly as an unknown key does."""
    visible = visible_bases(current_user)
    try:
        config = ApiDependencies.invoker.services.model_manager.store.get_model(key)
    except UnknownModelException as e:
        raise HTTPException(status_code=404, detail=str(e)) from e
    if not visible(config.base):
        raise HTTPException(status_code=404, detail=NOT_FOUND_BY_KEY)
    return prepare_model_config_for_response(config, ApiDependencies)
