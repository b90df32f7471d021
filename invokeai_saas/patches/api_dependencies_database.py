"""Upstream: the names ``init_db``, ``ModelRecordServiceSQL`` and ``AppSettingsService`` inside
``invokeai.app.api.dependencies``. Checked on 6.14.2. Applied only when PostgreSQL is configured.

``ApiDependencies.initialize`` opens (and migrates) the SQLite file before anything else, reads the JWT
secret through ``AppSettingsService`` on the spot, and hands the model record store straight to the
model manager and the external-generation service — all before the dependency-swap hook can run. So:

- ``init_db`` returns an in-memory, unmigrated ``SqliteDatabase``: the stock record services are
  still constructed with it (their constructors only keep the reference) and are then replaced by the
  postgres plugin through the swap hook, so no SQLite file is ever created and nothing queries it;
- ``AppSettingsService`` and ``ModelRecordServiceSQL`` are constructed as their PostgreSQL
  implementations, so the JWT secret (one per database, shared by every API process) and the model
  records come from PostgreSQL (with the orphaned-model scan's ``_db``, see
  ``model_records_orphan_scan``).
"""

from __future__ import annotations

from logging import Logger
from types import ModuleType
from typing import Any

import wrapt
from sqlalchemy import Engine


def apply(dependencies_module: ModuleType, engine: Engine) -> None:
    from invokeai.app.services.shared.sqlite.sqlite_database import SqliteDatabase

    from invokeai_saas.patches import model_records_orphan_scan
    from invokeai_saas.services.app_settings.app_settings_postgres import AppSettingsServicePostgres
    from invokeai_saas.services.model_records.model_records_postgres import ModelRecordServicePostgres

    def init_db(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        logger: Logger = kwargs.get("logger") or args[1]
        logger.info("saas mode: InvokeAI data lives in PostgreSQL; no SQLite database is opened")
        return SqliteDatabase(db_path=None, logger=logger)

    def app_settings(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return AppSettingsServicePostgres(engine)

    def model_records(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        logger = kwargs.get("logger") or (args[1] if len(args) > 1 else None)
        store = ModelRecordServicePostgres(engine, logger=logger)
        model_records_orphan_scan.apply(store, engine)
        return store

    wrapt.wrap_function_wrapper(dependencies_module, "init_db", init_db)
    wrapt.wrap_function_wrapper(dependencies_module, "AppSettingsService", app_settings)
    wrapt.wrap_function_wrapper(dependencies_module, "ModelRecordServiceSQL", model_records)
