"""The worker fleet in PostgreSQL: the registry every worker beats into, and the fleet-wide pause switch.

Why the database and not Redis alone: an API process answering "how many workers, busy or idle" or "is the
processor paused" must get the same answer whichever process the request lands on and after any restart, and
a worker that starts while the fleet is paused must start paused. Redis only carries the "look now" nudge
(``invokeai_saas.dispatch.control``) so a pause reaches running workers at once rather than at their next beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from invokeai_saas.db.engine import autocommit_reads
from invokeai_saas.db.tables import fleet_state, workers

# ``unhealthy``: a processing thread died; the worker is letting go of its item and restarting the thread.
WORKER_STATES = ("idle", "busy", "paused", "draining", "unhealthy")


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker says about itself when it registers."""

    worker_id: str
    host: str
    pid: int
    device: str
    gpu_name: str | None
    gpu_memory_bytes: int | None
    tiers: tuple[int, ...]


class WorkerStatus(BaseModel):
    """One registered worker, as admins and autoscalers see it."""

    worker_id: str
    host: str
    pid: int
    device: str
    gpu_name: str | None
    gpu_memory_bytes: int | None
    tiers: list[int]
    state: str = Field(
        description="idle, busy, paused, draining, unhealthy (a processing thread died and is being restarted), "
        "or stopped / lost"
    )
    current_item_id: int | None
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None


class FleetSummary(BaseModel):
    """The fleet at a glance: live workers (beating within their lease), and how many run an item now."""

    workers: int = Field(description="Workers that beat within the lease period")
    busy: int = Field(description="Live workers running an item")
    idle: int = Field(description="Live workers waiting for work (or paused); an unhealthy worker is not idle")
    paused: bool = Field(description="Whether the processor is paused fleet-wide")


class FleetState:
    """The fleet-wide pause switch (one row, seeded by the migration)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = autocommit_reads(engine)

    @staticmethod
    def paused_in(conn: Connection) -> bool:
        """The switch as ``conn`` sees it (a claim reads it inside its own transaction)."""
        return bool(conn.execute(select(fleet_state.c.paused).where(fleet_state.c.id == 1)).scalar_one())

    def is_paused(self) -> bool:
        with self._reads.connect() as conn:
            return self.paused_in(conn)

    def set_paused(self, paused: bool) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(fleet_state).where(fleet_state.c.id == 1).values(paused=paused))


class WorkerRegistry:
    """Registration, beats and the fleet listing. A worker is live while its last beat is within ``lease``."""

    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        self._engine = engine
        self._lease = lease_seconds

    def register(self, info: WorkerInfo) -> None:
        values = {
            "worker_id": info.worker_id,
            "host": info.host,
            "pid": info.pid,
            "device": info.device,
            "gpu_name": info.gpu_name,
            "gpu_memory_bytes": info.gpu_memory_bytes,
            "tiers": ",".join(str(t) for t in info.tiers),
            "state": "idle",
        }
        # A worker restarted under the same id (a pod name, a systemd instance) starts a new life in the same row.
        fresh = {**values, "current_item_id": None, "stopped_at": None, "started_at": func.clock_timestamp()}
        statement = pg_insert(workers).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[workers.c.worker_id], set_={**fresh, "last_beat_at": func.clock_timestamp()}
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def beat(self, worker_id: str, state: str, current_item_id: int | None) -> None:
        if state not in WORKER_STATES:
            raise ValueError(f"unknown worker state {state!r}")
        statement = (
            pg_insert(workers)
            .values(worker_id=worker_id, host="", pid=0, device="", tiers="", state=state)
            .on_conflict_do_update(
                index_elements=[workers.c.worker_id],
                set_={"state": state, "current_item_id": current_item_id, "last_beat_at": func.clock_timestamp()},
            )
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def deregister(self, worker_id: str) -> None:
        """A clean exit: the row stays (history for admins) with ``stopped_at`` set."""
        with self._engine.begin() as conn:
            conn.execute(
                update(workers)
                .where(workers.c.worker_id == worker_id)
                .values(state="idle", current_item_id=None, stopped_at=func.clock_timestamp())
            )

    def _live(self) -> object:
        return (workers.c.stopped_at.is_(None)) & (
            workers.c.last_beat_at > func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, self._lease)
        )

    def is_live(self, worker_id: str) -> bool:
        with self._engine.connect() as conn:
            return (
                conn.execute(select(workers.c.worker_id).where(workers.c.worker_id == worker_id, self._live())).first()
                is not None
            )

    def list(self, include_stopped: bool = False) -> list[WorkerStatus]:
        live = self._live().label("live")
        query = select(workers, live).order_by(workers.c.started_at, workers.c.worker_id)
        if not include_stopped:
            query = query.where(self._live())
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        result = []
        for row in rows:
            state = row.state if row.live else ("stopped" if row.stopped_at is not None else "lost")
            result.append(
                WorkerStatus(
                    worker_id=row.worker_id,
                    host=row.host,
                    pid=row.pid,
                    device=row.device,
                    gpu_name=row.gpu_name,
                    gpu_memory_bytes=row.gpu_memory_bytes,
                    tiers=[int(t) for t in row.tiers.split(",") if t],
                    state=state,
                    current_item_id=row.current_item_id if row.live else None,
                    started_at=row.started_at,
                    last_beat_at=row.last_beat_at,
                    stopped_at=row.stopped_at,
                )
            )
        return result

    def summary(self, paused: bool) -> FleetSummary:
        idle = func.count().filter(workers.c.current_item_id.is_(None), workers.c.state != "unhealthy")
        counts = select(func.count(), func.count(workers.c.current_item_id), idle).select_from(workers)
        with self._engine.connect() as conn:
            total, busy, idle_count = conn.execute(counts.where(self._live())).one()
        return FleetSummary(workers=total, busy=busy, idle=idle_count, paused=paused)
