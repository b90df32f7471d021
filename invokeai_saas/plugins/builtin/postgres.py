"""The postgres plugin: active when ``database_url`` is set.

Swaps every DB-backed InvokeAI service for its PostgreSQL implementation, the image and video services
for subclasses that list without a query per row, and the ``images_by_names`` and workflow list routes for batched ones.
The model records and app settings are constructed on PostgreSQL earlier, by
``patches.api_dependencies_database``, because stock uses them before the swap hook runs. Answers 503 with
``Retry-After`` wherever a database outage is behind an error (``invokeai_saas/routes/outages.py``), bounds each
user's workflows (``routes/workflow_limit.py``) and finished queue items (``services/session_queue/
session_queue_retention.py``). Also provides the database health probe.
"""

from __future__ import annotations

from logging import Logger
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy import text

from invokeai_saas.config import SaasSettings
from invokeai_saas.db.engine import get_engine
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl
from invokeai_saas.runtime import worker_role

_state: dict[str, Any] = {}


@hookimpl
def saas_swap_services(
    invokeai_config: Any, saas_config: SaasSettings, services: dict[str, Any], logger: Logger
) -> None:
    if saas_config.database_url is None:
        return
    from invokeai_saas.services.board_image_records.board_image_records_postgres import (
        PostgresBoardImageRecordStorage,
    )
    from invokeai_saas.services.board_records.board_records_postgres import PostgresBoardRecordStorage
    from invokeai_saas.services.board_video_records.board_video_records_postgres import (
        PostgresBoardVideoRecordStorage,
    )
    from invokeai_saas.services.boards.boards_summarized import SummarizedBoardService
    from invokeai_saas.services.client_state_persistence.client_state_persistence_postgres import (
        ClientStatePersistencePostgres,
    )
    from invokeai_saas.services.gallery.gallery_postgres import PostgresGalleryService
    from invokeai_saas.services.image_moves.image_moves_postgres import PostgresImageMoveService
    from invokeai_saas.services.image_records.image_records_postgres import PostgresImageRecordStorage
    from invokeai_saas.services.images.images_batched import BatchedImageService
    from invokeai_saas.services.model_relationship_records.model_relationship_records_postgres import (
        PostgresModelRelationshipRecordStorage,
    )
    from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue
    from invokeai_saas.services.style_preset_records.style_preset_records_postgres import (
        PostgresStylePresetRecordsStorage,
    )
    from invokeai_saas.services.system_prompt_records.system_prompt_records_postgres import (
        PostgresSystemPromptRecordsStorage,
    )
    from invokeai_saas.services.users.users_postgres import UserServicePostgres
    from invokeai_saas.services.video_records.video_records_postgres import PostgresVideoRecordStorage
    from invokeai_saas.services.videos.videos_batched import BatchedVideoService
    from invokeai_saas.services.workflow_records.workflow_records_postgres import PostgresWorkflowRecordsStorage
    from invokeai_saas.services.workflow_thumbnails.workflow_thumbnails_record_aware import (
        RecordAwareWorkflowThumbnailFileStorage,
    )

    engine = get_engine(saas_config)
    services.update(
        images=BatchedImageService(),
        workflow_thumbnails=RecordAwareWorkflowThumbnailFileStorage(invokeai_config.workflow_thumbnails_path),
        videos=BatchedVideoService(),
        board_image_records=PostgresBoardImageRecordStorage(engine),
        board_records=PostgresBoardRecordStorage(engine),
        boards=SummarizedBoardService(),
        board_video_records=PostgresBoardVideoRecordStorage(engine),
        client_state_persistence=ClientStatePersistencePostgres(engine),
        gallery=PostgresGalleryService(engine),
        image_moves=PostgresImageMoveService(
            engine, image_files=services["image_files"], config=services["configuration"], logger=logger
        ),
        image_records=PostgresImageRecordStorage(engine),
        model_relationship_records=PostgresModelRelationshipRecordStorage(engine),
        session_queue=PostgresSessionQueue(engine),
        style_preset_records=PostgresStylePresetRecordsStorage(engine),
        system_prompt_records=PostgresSystemPromptRecordsStorage(engine),
        users=UserServicePostgres(engine),
        video_records=PostgresVideoRecordStorage(engine),
        workflow_records=PostgresWorkflowRecordsStorage(engine),
    )
    logger.info("saas mode: InvokeAI services on PostgreSQL")


@hookimpl
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    if saas_config.database_url is None:
        return []
    from invokeai_saas.routes.images_by_names import images_by_names_router
    from invokeai_saas.routes.list_workflows import list_workflows_router

    return [images_by_names_router, list_workflows_router]


@hookimpl
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    if saas_config.database_url is None:
        return
    from invokeai_saas.patches import api_app_route_guards
    from invokeai_saas.routes.outages import install_database_error_handlers
    from invokeai_saas.routes.workflow_limit import workflow_limit_guard

    install_database_error_handlers(app)  # 503 + Retry-After on an outage, 422 on a value PostgreSQL refuses
    if saas_config.max_workflows_per_user is not None:
        api_app_route_guards.apply(
            app, [workflow_limit_guard(get_engine(saas_config), saas_config.max_workflows_per_user)]
        )


@hookimpl
def saas_startup(saas_config: SaasSettings, services: Any, logger: Logger) -> None:
    if saas_config.database_url is None or worker_role() is not None:
        return
    from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue

    if services.configuration.multiuser and isinstance(services.session_queue, PostgresSessionQueue):
        # A deactivated account's work stops within a second, however it was deactivated (...suspensions.py).
        from invokeai_saas.services.session_queue.session_queue_suspensions import suspension_task

        suspensions = suspension_task(get_engine(saas_config), services.session_queue, logger)
        suspensions.start()
        _state["suspensions"] = suspensions
    # API processes bound each user's finished queue items (invokeai_saas/services/session_queue/...retention.py).
    if saas_config.max_queue_history_per_user is None:
        return
    from invokeai_saas.services.session_queue.session_queue_retention import retention_task

    task = retention_task(get_engine(saas_config), saas_config.max_queue_history_per_user, logger)
    task.start()
    _state["retention"] = task


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    if saas_config.database_url is None:
        return []
    engine = get_engine(saas_config)

    def check() -> str:
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
        return f"PostgreSQL {str(version).split()[0]}"

    return [BackendProbe("database", "postgres", check)]


@hookimpl
def saas_shutdown(saas_config: SaasSettings, logger: Logger) -> None:
    for name in ("suspensions", "retention"):
        task = _state.pop(name, None)
        if task is not None:
            task.stop()
    if saas_config.database_url is None:
        return
    from invokeai_saas.db.engine import dispose_engines

    dispose_engines()
