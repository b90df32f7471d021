"""Plan limits checked again where the graph runs, node by node, on the values each node really got.

The enqueue checks (``invokeai_saas.credits.limits``) read the graph as it was sent: literal widths and heights,
model identifiers, batch data. A value can also reach a node through an edge (an Integer node feeding
``noise.width``, a model loader's output) or in a form the enqueue does not read. When a node is about to run every
input is resolved, so ``RunLimits.on_before_run_node``, a stock ``DefaultSessionRunner`` callback, sees exactly what
the node will use and applies the same resolution and model rules (``enforce_graph_limits``). A node outside the
plan raises ``PlanLimitExceeded``: stock's runner fails the item with the plan's message as its error, and a failed
item is charged nothing (``SessionCharger`` releases its hold).

The subscription is read once per run (``on_before_run_session``) and dropped when the run ends; the models table
is read only for nodes that carry model identifiers.
"""

from __future__ import annotations

import threading
from typing import Any

from invokeai.app.services.session_queue.session_queue_common import SessionQueueItem
from sqlalchemy import Engine

from invokeai_saas.credits.estimate import CreditEstimator
from invokeai_saas.credits.limits import PlanLimitExceeded, enforce_graph_limits
from invokeai_saas.credits.plans import PlanService, Subscription
from invokeai_saas.db.engine import autocommit_reads


class RunLimits:
    """``on_before_run_session`` / ``on_before_run_node`` / ``on_after_run_session`` callbacks for stock's runner."""

    def __init__(self, engine: Engine, plans: PlanService, estimator: CreditEstimator) -> None:
        self._reads = autocommit_reads(engine)
        self._plans = plans
        self._estimator = estimator
        self._subscriptions: dict[int, Subscription | None] = {}
        self._lock = threading.Lock()

    def on_before_run_session(self, queue_item: SessionQueueItem) -> None:
        subscription = self._plans.subscription(queue_item.user_id)
        with self._lock:
            self._subscriptions[queue_item.item_id] = subscription

    def on_after_run_session(self, queue_item: SessionQueueItem) -> None:
        with self._lock:
            self._subscriptions.pop(queue_item.item_id, None)

    def on_before_run_node(self, invocation: Any, queue_item: SessionQueueItem) -> None:
        with self._lock:
            known = queue_item.item_id in self._subscriptions
            subscription = self._subscriptions.get(queue_item.item_id)
        if not known:  # a run whose session callback did not reach this object: read it now
            subscription = self._plans.subscription(queue_item.user_id)
        if subscription is None:
            raise PlanLimitExceeded(403, "Your account has no plan.")
        estimate = self._estimator.estimate_nodes([invocation])
        with self._reads.connect() as conn:
            enforce_graph_limits(conn, subscription, estimate)
