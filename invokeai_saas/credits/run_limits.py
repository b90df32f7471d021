"""Plan limits checked again where the graph runs, node by node, on the values each node really got.

The enqueue checks (``invokeai_saas.credits.limits``) read the graph as it was sent: literal sizes and model
identifiers, batch data. A value can also reach a node through an edge, so ``RunLimits.on_before_run_node``, a
stock ``DefaultSessionRunner`` callback, checks each node as it is about to run, every input resolved:

- every node's models against the plan's model access (the base each identifier claims and the one its key is
  recorded with), so no graph runs a model outside the plan however the identifier got there;
- a denoiser's own ``width``/``height`` (FLUX, SD3, CogView... denoisers carry them) against ``max_resolution``.
  ``noise`` is left to the enqueue check: stock's Upscaling tab feeds an upscaled image's size to it through an
  edge for tiled MultiDiffusion, which denoises tile by tile and is paid for by its measured time; the plan's
  resolution is the size a user asks to generate, not the size an upscale reaches.

A node outside the plan raises ``PlanLimitExceeded``: stock's runner fails the item with the plan's message as its
error. It is charged the seconds it ran (``SessionCharger``): work done before a refusal is not free.

The subscription is read once per run (``on_before_run_session``; a failed read is retried at the first node) and
dropped when the run ends; at most ``MAX_TRACKED_RUNS`` are kept, so runs whose end callback stock skipped (an item
deleted mid-run) cannot accumulate. The models table is read only for nodes that carry model identifiers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from invokeai.app.services.session_queue.session_queue_common import SessionQueueItem
from sqlalchemy import Engine

from invokeai_saas.credits.estimate import CreditEstimator, is_denoiser
from invokeai_saas.credits.limits import NO_PLAN, PlanLimitExceeded, enforce_model_access, enforce_resolution
from invokeai_saas.credits.plans import PlanService, Subscription
from invokeai_saas.db.engine import autocommit_reads

logger = logging.getLogger("invokeai_saas.credits")

MAX_TRACKED_RUNS = 256


class RunLimits:
    """``on_before_run_session`` / ``on_before_run_node`` / ``on_after_run_session`` callbacks for stock's runner."""

    def __init__(self, engine: Engine, plans: PlanService, estimator: CreditEstimator) -> None:
        self._reads = autocommit_reads(engine)
        self._plans = plans
        self._estimator = estimator
        self._subscriptions: OrderedDict[int, Subscription | None] = OrderedDict()
        self._lock = threading.Lock()

    def on_before_run_session(self, queue_item: SessionQueueItem) -> None:
        try:
            subscription = self._plans.subscription(queue_item.user_id)
        except Exception:  # never fail a run here: the first node reads it again
            logger.exception(f"Could not read the plan of queue item {queue_item.item_id}'s owner")
            return
        with self._lock:
            self._subscriptions[queue_item.item_id] = subscription
            while len(self._subscriptions) > MAX_TRACKED_RUNS:
                self._subscriptions.popitem(last=False)

    def on_after_run_session(self, queue_item: SessionQueueItem) -> None:
        with self._lock:
            self._subscriptions.pop(queue_item.item_id, None)

    def on_before_run_node(self, invocation: Any, queue_item: SessionQueueItem) -> None:
        with self._lock:
            known = queue_item.item_id in self._subscriptions
            subscription = self._subscriptions.get(queue_item.item_id)
        if not known:
            subscription = self._plans.subscription(queue_item.user_id)
        if subscription is None:
            raise PlanLimitExceeded(403, NO_PLAN)
        estimate = self._estimator.estimate_nodes([invocation])
        if is_denoiser(invocation):
            enforce_resolution(subscription, estimate)
        if estimate.model_bases or estimate.model_keys or estimate.model_base is not None:
            with self._reads.connect() as conn:
                enforce_model_access(conn, subscription, estimate)
