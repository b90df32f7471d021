"""The sqs plugin: active when SQS is configured. Graphs then run on worker processes, not in the API.

- ``saas_swap_services``: in an API process, the session queue dispatches every runnable item over SQS and never
  dequeues (``DispatchingSessionQueue``), and the session processor reports and pauses the worker fleet
  (``RemoteSessionProcessor``). In a worker (``invokeai-saas worker`` sets the role first), the session queue
  claims items for stock's own ``DefaultSessionProcessor`` (``WorkerSessionQueue``). Runs after the postgres
  plugin, whose PostgreSQL queue these extend.
- ``saas_startup``: creates the queues (idempotent) and starts this process's reaper pass.
- The queue status route reports the fleet (``invokeai_saas.routes.queue_fleet``, installed by the tenant_queue
  plugin with the other queue views).
- ``saas_routers``: the admin's worker list.
- ``saas_health_probes``: a signed ListQueues.
"""

from __future__ import annotations

from logging import Logger
from typing import Any

from fastapi import APIRouter

from invokeai_saas.aws import sqs_client
from invokeai_saas.config import SaasSettings
from invokeai_saas.health.probes import BackendProbe
from invokeai_saas.plugins.markers import hookimpl
from invokeai_saas.runtime import worker_role

# The backlog check asks SQS for every tier's counts: every this many reaper passes, not every pass.
RECONCILE_EVERY_PASSES = 10

_state: dict[str, Any] = {}


def _active(saas_config: SaasSettings) -> bool:
    return saas_config.sqs_active and saas_config.database_url is not None


@hookimpl
def saas_swap_services(
    invokeai_config: Any, saas_config: SaasSettings, services: dict[str, Any], logger: Logger
) -> None:
    if not _active(saas_config):
        return
    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.dispatch.sqs_dispatch import SqsDispatcher

    engine = get_engine(saas_config)
    dispatcher = SqsDispatcher(saas_config)
    role = worker_role()
    if role is None:
        from invokeai_saas.services.session_processor.session_processor_remote import RemoteSessionProcessor
        from invokeai_saas.services.session_queue.session_queue_dispatching import DispatchingSessionQueue

        services["session_queue"] = DispatchingSessionQueue(engine, dispatcher, saas_config)
        services["session_processor"] = RemoteSessionProcessor(engine, saas_config.worker_lease_seconds)
        logger.info("saas mode: queue items are dispatched over SQS to worker processes")
    else:
        from invokeai_saas.services.session_queue.session_queue_worker import WorkerSessionQueue

        services["session_queue"] = WorkerSessionQueue(engine, dispatcher, saas_config, role.worker_id, role.tiers)
        logger.info(f"saas worker {role.worker_id}: serving tiers {list(role.tiers)}")


@hookimpl
def saas_startup(saas_config: SaasSettings, services: Any, logger: Logger) -> None:
    if not _active(saas_config) or "reaper" in _state:
        return
    from invokeai_saas.dispatch.sqs_dispatch import DispatchUnavailable
    from invokeai_saas.periodic import PeriodicTask
    from invokeai_saas.services.session_queue.session_queue_dispatching import DispatchingSessionQueue

    queue = services.session_queue
    if not isinstance(queue, DispatchingSessionQueue):
        return
    try:
        queue.dispatcher.ensure_queues()
    except DispatchUnavailable as e:
        logger.warning(f"{e}; enqueued items are dispatched once SQS answers")

    def reap(pass_number: int) -> None:
        queue.reap(reconcile=pass_number % RECONCILE_EVERY_PASSES == 0)

    reaper = PeriodicTask("invokeai-saas-dispatch-reaper", saas_config.worker_heartbeat_seconds, reap, logger)
    reaper.start()
    _state["reaper"] = reaper


@hookimpl
def saas_shutdown(saas_config: SaasSettings, logger: Logger) -> None:
    reaper = _state.pop("reaper", None)
    if reaper is not None:
        reaper.stop()


@hookimpl
def saas_routers(saas_config: SaasSettings) -> list[APIRouter]:
    if not _active(saas_config):
        return []
    from invokeai_saas.routes.queue_fleet import workers_router

    return [workers_router]


@hookimpl
def saas_health_probes(saas_config: SaasSettings, services: Any) -> list[BackendProbe]:
    if not saas_config.sqs_active:
        return []
    client = sqs_client(saas_config)
    prefix = saas_config.sqs_queue_prefix

    def check() -> str:
        urls = client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
        return f"SQS reachable; {len(urls)} queue(s) with the configured prefix"

    return [BackendProbe("queue", "sqs", check)]
