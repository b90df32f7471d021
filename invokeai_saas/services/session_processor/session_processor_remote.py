"""The API process's session processor when graphs run on workers (stock: ``DefaultSessionProcessor``).

With SQS dispatch an API process never runs a graph, so it has no processing thread: enqueue sends dispatch
messages (``DispatchingSessionQueue``) and workers claim them. What stays here is the processor's contract
towards stock routes and sockets:

- ``pause``/``resume`` flip the fleet-wide switch in PostgreSQL, which every worker reads on each beat; like
  stock's pause, a running item finishes and no new one starts until resume;
- ``get_status`` reports the fleet: started unless paused, processing while any live worker runs an item;
- ``get_running_queue_item_owners`` (stock's socket revalidation loop) answers for the whole deployment.
"""

from __future__ import annotations

from invokeai.app.services.invoker import Invoker
from invokeai.app.services.session_processor.session_processor_base import SessionProcessorBase
from invokeai.app.services.session_processor.session_processor_common import SessionProcessorStatus
from sqlalchemy import Engine, select

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import session_queue
from invokeai_saas.dispatch.fleet import FleetState, FleetSummary, WorkerRegistry


class RemoteSessionProcessor(SessionProcessorBase):
    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        super().__init__()
        self._reads = autocommit_reads(engine)
        self.fleet_state = FleetState(engine)
        self.registry = WorkerRegistry(self._reads, lease_seconds)

    def start(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def resume(self) -> SessionProcessorStatus:
        self.fleet_state.set_paused(False)
        return self.get_status()

    def pause(self) -> SessionProcessorStatus:
        self.fleet_state.set_paused(True)
        return self.get_status()

    def fleet(self) -> FleetSummary:
        return self.registry.summary(paused=self.fleet_state.is_paused())

    def get_status(self) -> SessionProcessorStatus:
        return self.status_of(self.fleet())

    @staticmethod
    def status_of(fleet: FleetSummary) -> SessionProcessorStatus:
        """Stock's processor status for a fleet: started unless paused, processing while a worker runs an item."""
        return SessionProcessorStatus(is_started=not fleet.paused, is_processing=fleet.busy > 0)

    def get_running_queue_item_owners(self) -> set[str]:
        with self._reads.connect() as conn:
            rows = conn.execute(
                select(session_queue.c.user_id).where(session_queue.c.status == "in_progress").distinct()
            ).scalars()
            return {str(user_id) for user_id in rows}
