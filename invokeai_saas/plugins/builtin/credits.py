"""The credits plugin: active when ``database_url`` is set (plans and the ledger live in PostgreSQL).

Adds the signed-in user's plan, balance, ledger and usage routes and the public plan catalogue
(``invokeai_saas/credits/router.py``).

With ``credits_enforced`` (the default), ``saas_swap_services`` makes generation metered
(``invokeai_saas/credits/settlement.py``): the session queue holds each new item's estimated cost in the transaction
that inserts it after checking the plan's limits (``invokeai_saas/credits/limits.py``), and in every process that
runs graphs (a worker, or an API process without SQS) stock's runner gets the callbacks that measure GPU time and
settle it, and check each node against the plan as it runs (``invokeai_saas/credits/run_limits.py``);
``saas_route_overrides`` answers a refused enqueue with 402 (403/429 for plan limits) and shows each user only the
models of their plan (``invokeai_saas/credits/models_route.py``), and ``saas_configure_app`` answers any other
stock route that meets a refusal (retry) the same way and guards the workflow and upload routes
(``invokeai_saas/credits/access.py``). Runs after the postgres
and sqs plugins, whose queue and processor it extends. Every API process also releases, every
``RELEASE_INTERVAL_SECONDS``, the holds of items that ended without a settlement.

``saas_startup`` starts this API process's credit period pass (``invokeai_saas.credits.periods``): every
``ROLL_INTERVAL_SECONDS`` (60 s) it renews the monthly allotments whose period ended and expires ended grants. Every
API process runs one; row locks make them share the work. Workers do not run it. ``saas_shutdown`` stops it.

Running items are metered to the end: every stop of a running item from outside its run (cancel, delete, clear,
the cap) charges the time it ran, in the transaction that stops it (the queue's stop hook,
``invokeai_saas/credits/stops.py``), and every API process runs the spending cap every ``CAP_INTERVAL_SECONDS``
(``invokeai_saas/credits/cap.py``): an item whose cost reached its hold plus the available balance, or that ran its
plan's ``max_run_seconds``, fails with a clear error and is charged at most what its owner can pay."""

from __future__ import annotations

from logging import Logger
from typing import Any

from fastapi import APIRouter, FastAPI

from invokeai_saas.config import SaasSettings
from invokeai_saas.plugins.markers import hookimpl
from invokeai_saas.runtime import worker_role

# How often an API process releases the holds of items that ended unsettled (canceled before they ran, deleted,
# failed by the reaper): a canceled batch's credits come back within this long.
RELEASE_INTERVAL_SECONDS = 10.0
# How often an API process runs the spending cap (invokeai_saas/credits/cap.py): a running item that reached what
# its owner can pay, or its plan's longest run, stops within about this long (plus the device's next cancel check);
# it is charged exactly what could be paid either way.
CAP_INTERVAL_SECONDS = 1.0

_state: dict[str, Any] = {}


def _metered(saas_config: SaasSettings) -> bool:
    return saas_config.database_url is not None and saas_config.credits_enforced


@hookimpl
def saas_swap_services(
    invokeai_config: Any, saas_config: SaasSettings, services: dict[str, Any], logger: Logger
) -> None:
    if not _metered(saas_config):
        return
    from invokeai.app.services.session_processor.session_processor_default import (
        DefaultSessionProcessor,
        DefaultSessionRunner,
    )

    from invokeai_saas.credits.estimate import CreditEstimator
    from invokeai_saas.credits.ledger import CreditLedger
    from invokeai_saas.credits.periods import SubscriptionPeriods
    from invokeai_saas.credits.plans import PlanService
    from invokeai_saas.credits.run_limits import RunLimits
    from invokeai_saas.credits.settlement import CreditHoldGuard, SessionCharger
    from invokeai_saas.credits.stops import OUT_OF_CREDITS, RUN_TIME_LIMIT, StopCharger
    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.patches import session_processor_failed_stops
    from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue

    engine = get_engine(saas_config)
    ledger, plans = CreditLedger(engine), PlanService(engine)
    estimator = CreditEstimator(
        saas_config.credit_estimate_overhead_seconds,
        saas_config.credit_estimate_step_seconds,
        saas_config.credit_estimate_node_seconds,
    )
    queue = services.get("session_queue")
    if isinstance(queue, PostgresSessionQueue):
        queue.add_enqueue_guard(CreditHoldGuard(ledger, plans, estimator, SubscriptionPeriods(engine, ledger)))
        # Every stop of a running item from outside its run charges the time it ran (invokeai_saas/credits/stops.py).
        queue.add_stop_hook(StopCharger(ledger))
    if isinstance(services.get("session_processor"), DefaultSessionProcessor):
        # The spending cap fails running items; stock's processor stops a run only on a cancel, so it is taught to
        # stop on these failures too (invokeai_saas/patches/session_processor_failed_stops.py).
        session_processor_failed_stops.apply([OUT_OF_CREDITS, RUN_TIME_LIMIT])
        # This process runs graphs: stock's processor with a runner that also measures and charges them.
        # It also checks each node against the plan on the values it really got (invokeai_saas/credits/run_limits.py).
        charger = SessionCharger(engine, ledger, plans, estimator)
        run_limits = RunLimits(engine, plans, estimator)
        services["session_processor"] = DefaultSessionProcessor(
            session_runner=DefaultSessionRunner(
                on_before_run_session_callbacks=[charger.on_before_run_session, run_limits.on_before_run_session],
                on_before_run_node_callbacks=[run_limits.on_before_run_node],
                on_after_run_node_callbacks=[charger.on_after_run_node],
                on_after_run_session_callbacks=[run_limits.on_after_run_session, charger.on_after_run_session],
            )
        )
    logger.info("saas mode: generation is metered in credits")


@hookimpl
def saas_configure_app(saas_config: SaasSettings, app: FastAPI) -> None:
    if not _metered(saas_config):
        return
    from invokeai_saas.credits.access import route_guards
    from invokeai_saas.credits.http_errors import install_credit_error_handler
    from invokeai_saas.db.engine import get_engine
    from invokeai_saas.patches import api_app_route_guards

    install_credit_error_handler(app)
    # Node editor access on the workflow routes, the storage quota on uploads (invokeai_saas/credits/access.py).
    # Runs after the route overrides are in place (activation applies them first), so an overridden route is guarded.
    api_app_route_guards.apply(app, route_guards(get_engine(saas_config)))


@hookimpl
def saas_route_overrides(saas_config: SaasSettings) -> list[APIRouter]:
    if not _metered(saas_config):
        return []
    from invokeai_saas.credits.enqueue_route import enqueue_router
    from invokeai_saas.credits.models_route import models_router  # the model reads, filtered by the plan

    return [enqueue_router, models_router]


@hookimpl
def saas_routers(saas_config: SaasSettings) -> list[APIRouter]:
    if saas_config.database_url is None:
        return []
    from invokeai_saas.credits.router import credits_router  # imports stock's auth: only at app import

    return [credits_router]


@hookimpl
def saas_startup(saas_config: SaasSettings, services: Any, logger: Logger) -> None:
    if saas_config.database_url is None or worker_role() is not None or "periods" in _state:
        return
    from invokeai_saas.credits.ledger import CreditLedger
    from invokeai_saas.credits.periods import CreditPeriodScheduler, SubscriptionPeriods
    from invokeai_saas.db.engine import get_engine

    engine = get_engine(saas_config)
    scheduler = CreditPeriodScheduler(SubscriptionPeriods(engine, CreditLedger(engine)), logger)
    scheduler.start()
    _state["periods"] = scheduler
    if _metered(saas_config):
        from invokeai_saas.credits.settlement import release_unsettled
        from invokeai_saas.periodic import PeriodicTask

        ledger = CreditLedger(engine)
        releases = PeriodicTask(
            "invokeai-saas-credit-releases",
            RELEASE_INTERVAL_SECONDS,
            lambda _: release_unsettled(engine, ledger),
            logger,
        )
        releases.start()
        _state["releases"] = releases
        from invokeai_saas.credits.cap import SpendingCap

        cap = SpendingCap(engine, services.session_queue)
        caps = PeriodicTask("invokeai-saas-spending-cap", CAP_INTERVAL_SECONDS, lambda _: cap.run_once(), logger)
        caps.start()
        _state["caps"] = caps


@hookimpl
def saas_shutdown(saas_config: SaasSettings, logger: Logger) -> None:
    for name in ("periods", "releases", "caps"):
        task = _state.pop(name, None)
        if task is not None:
            task.stop()
