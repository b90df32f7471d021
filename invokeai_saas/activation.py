"""Activation inside stock ``invokeai-web``: decide whether saas mode is on, and apply the patches.

Flow: the ``.pth`` finder (``invokeai_saas._hook``) sees the first ``import invokeai`` and calls
``register_post_import_hooks``; wrapt then calls us when ``invokeai.app.api.dependencies`` and
``invokeai.app.api_app`` finish importing. By then ``invokeai-web`` has parsed its command line, so
``get_config()`` knows the root and ``saas.yaml`` can be found beside ``invokeai.yaml``. With saas
mode off nothing below runs past ``_activate`` and InvokeAI is untouched.

Configuration errors, an unverified InvokeAI and broken plugins stop the process with a one-line
message (exit status 2) instead of starting a service that is not what the operator configured.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import NoReturn

from invokeai_saas.config import SaasSettings
from invokeai_saas.runtime import SaasRuntime, set_runtime

DEPENDENCIES_MODULE = "invokeai.app.api.dependencies"
API_APP_MODULE = "invokeai.app.api_app"

_state: dict[str, SaasRuntime | None] = {}


def register_post_import_hooks() -> None:
    import wrapt

    wrapt.register_post_import_hook(_on_dependencies_imported, DEPENDENCIES_MODULE)
    wrapt.register_post_import_hook(_on_api_app_imported, API_APP_MODULE)


def _refuse(message: str) -> NoReturn:
    print(f"invokeai-saas: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _activate() -> SaasRuntime | None:
    """Load the settings once per process; return the runtime, or None when saas mode is off."""
    if "runtime" in _state:
        return _state["runtime"]
    from invokeai.app.services.config.config_default import get_config

    from invokeai_saas.config import SaasConfigError, load_settings
    from invokeai_saas.plugins.manager import SaasPluginError, get_plugin_manager
    from invokeai_saas.version_guard import UnsupportedInvokeAIVersion, check_invokeai_version

    invokeai_config = get_config()
    try:
        settings = load_settings(invokeai_config.config_file_path)
    except SaasConfigError as e:
        _refuse(str(e))
    if not settings.enabled:
        _state["runtime"] = None
        return None
    try:
        check_invokeai_version()
        plugin_manager = get_plugin_manager(settings)
    except (UnsupportedInvokeAIVersion, SaasPluginError) as e:
        _refuse(str(e))

    if settings.database_url is not None:
        _require_migrated_database(settings)
    if settings.s3_bucket is not None:
        _require_object_storage_prerequisites(settings, getattr(invokeai_config, "image_subfolder_strategy", "flat"))
    if settings.sqs_active:
        _require_dispatch_prerequisites(settings)

    from invokeai_saas.patches import config_multiuser

    config_multiuser.apply(invokeai_config)
    from invokeai.backend.util.logging import InvokeAILogger

    logger = InvokeAILogger.get_logger("invokeai-saas", config=invokeai_config)
    runtime = SaasRuntime(settings=settings, plugin_manager=plugin_manager, logger=logger)
    set_runtime(runtime)
    _state["runtime"] = runtime
    runtime.logger.info("saas mode on: patches applied, multiuser forced on")
    return runtime


def _require_migrated_database(settings: SaasSettings) -> None:
    """Refuse to start on a database that is unreachable, empty or behind: saying so now, with the command
    to run, beats failing in the middle of the first user's request."""
    from sqlalchemy.exc import SQLAlchemyError

    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.db.migrate import DatabaseNotMigrated, check_migrated

    try:
        check_migrated(get_engine(settings))
    except DatabaseNotMigrated as e:
        _refuse(str(e))
    except SQLAlchemyError as e:
        _refuse(f"cannot use the configured database ({type(e).__name__}); check INVOKEAI_SAAS_DATABASE_URL")


def _require_object_storage_prerequisites(settings: SaasSettings, subfolder_strategy: str) -> None:
    """Media on S3 is indexed in PostgreSQL (name → key, bytes per user), and its keys ignore InvokeAI's image
    subfolders (S3 has no directories to keep small), so a subfolder move would have nothing to move."""
    if settings.database_url is None:
        _refuse("s3_bucket needs database_url: the object index lives in PostgreSQL")
    if subfolder_strategy != "flat":
        _refuse(
            f"image_subfolder_strategy is '{subfolder_strategy}'; with S3 media it must be 'flat' "
            "(set image_subfolder_strategy: flat in invokeai.yaml)"
        )


def _require_dispatch_prerequisites(settings: SaasSettings) -> None:
    """With SQS, graphs run on workers: the queue, claims and leases live in PostgreSQL, and Redis carries the
    workers' events to browsers and cancellations to workers. Without either, items would never run or never
    be seen, so the server refuses to start."""
    if settings.database_url is None:
        _refuse("SQS dispatch needs database_url: queue items, claims and leases live in PostgreSQL")
    if settings.redis_url is None:
        _refuse("SQS dispatch needs redis_url: workers' events and cancellations travel through Redis")


def _on_dependencies_imported(module: ModuleType) -> None:
    runtime = _activate()
    if runtime is None:
        return
    from invokeai_saas.patches import api_dependencies_initialize, api_dependencies_services

    if runtime.settings.database_url is not None:
        from invokeai_saas.db.engine import get_engine
        from invokeai_saas.patches import api_dependencies_database

        api_dependencies_database.apply(module, get_engine(runtime.settings))
    api_dependencies_services.apply(module, runtime)
    api_dependencies_initialize.apply(module, runtime)
    if runtime.settings.redis_url is not None and runtime.plugin_manager.has_plugin("redis_events"):
        from invokeai_saas.patches import api_dependencies_events

        api_dependencies_events.apply(module, runtime)
    if runtime.settings.database_url is not None and runtime.plugin_manager.has_plugin("tenant_queue"):
        from invokeai_saas.patches import sockets_queue_events  # before api_app builds its SocketIO

        sockets_queue_events.apply()


def _on_api_app_imported(module: ModuleType) -> None:
    runtime = _activate()
    if runtime is None:
        return
    from invokeai_saas.patches import api_app_gzip, api_app_route_overrides, api_app_routes

    routers = [r for rs in runtime.plugin_manager.hook.saas_routers(saas_config=runtime.settings) for r in rs or []]
    api_app_routes.apply(module.app, routers)
    overrides = [
        r for rs in runtime.plugin_manager.hook.saas_route_overrides(saas_config=runtime.settings) for r in rs or []
    ]
    api_app_route_overrides.apply(module.app, overrides)
    runtime.plugin_manager.hook.saas_configure_app(saas_config=runtime.settings, app=module.app)
    api_app_gzip.apply(module)
