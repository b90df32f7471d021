"""Stock in-process execution vs saas mode with 1, 2 and 4 worker processes, for one CPU-bound graph, in one run.

Why this exists: saas mode moves graph execution out of the API process (enqueue → PostgreSQL row + SQS message →
``invokeai-saas worker`` claims it → runs it with InvokeAI's own session runner → events relayed through Redis back
to the API process the browser is connected to). That path must not cost a user much per item, and more workers
must finish more items per second. The honest way to see both is to run the same graph through stock
``invokeai-web`` and through the saas path side by side on one machine, in one run, and compare ratios.

The graph is one ``saas_test_spin`` node (the node pack in ``tests/support/saas_test_nodes``, copied into every
root's ``nodes`` folder) that burns ``--spin-ms`` (default 50) milliseconds of CPU: no model weights, no image, a
known cost per item.

Configurations, in order:

* ``stock``  — unmodified ``invokeai-web`` (overlay hook disabled), SQLite, ``multiuser: true``: its own session
  processor thread runs the items in the API process;
* ``saas-N`` — one saas ``invokeai-web`` (PostgreSQL, Redis events, SQS dispatch: it runs no graph) and N
  ``invokeai-saas worker`` processes; workers are added between configurations (1, then 2, then 4).

Per configuration: a warm-up burst (not measured), a **serial** phase (items submitted one at a time, each waited
for: the per-item latency a lone user sees, at low load), and a **burst** phase (``--items`` items enqueued as
fast as ``--clients`` threads can, one item per ``enqueue_batch`` call: throughput and queueing). Timing comes from
one clock in this process: ``perf_counter`` right before each enqueue POST, and the arrival of the
``queue_item_status_changed`` Socket.IO events (``in_progress``, ``completed``) on a websocket client connected to
the API process — what a user's browser would see.

Usage: ``python benchmarks/bench_workers.py`` (200 items per burst) or ``--quick`` (40). ``--help`` lists the knobs.
Everything binds to 127.0.0.1. No timing is asserted anywhere: the script measures and prints.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import socketio
from _bench_loadgen import percentile
from _bench_procstat import tree_cpu_seconds
from bench_postgres_api import SERVER_ENV, _ratio, _table, log

from invokeai_saas.devstack import PostgresServer, RedisServer, SqsServer, make_temp_data_dir
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.devstack.worker import InvokeAIWorker

HERE = Path(__file__).resolve().parent
NODE_PACK = HERE.parent / "tests" / "support" / "saas_test_nodes"

QUEUE = "default"
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "Bench-workers-password-42"
TERMINAL = ("completed", "failed", "canceled")
# The saas per-user cap on running items must not be what limits the burst: one user submits everything.
MAX_RUNNING_PER_USER = 16
OVERHEAD_TARGET_MS = 20.0
# Server-side processes whose CPU time is read around each phase: the API process, the workers (stock: none, its
# API process runs the graphs), and the servers saas adds (PostgreSQL's postmaster tree, Redis, moto).
CPU_GROUPS = ("api", "workers", "services")


# ---------------------------------------------------------------------------------------------------------------
# the clock: Socket.IO events as a browser receives them


class EventClock:
    """A websocket Socket.IO client, connected to one API process as the studio connects (token in ``auth``,
    subscribed to the queue room), noting when each item's status first arrived, on this process's clock."""

    def __init__(self, url: str, token: str) -> None:
        self._cond = threading.Condition()
        self.arrivals: dict[int, dict[str, float]] = {}
        self._client = socketio.Client(reconnection=False)
        self._client.on("queue_item_status_changed", handler=self._on_status)
        self._client.connect(
            url, socketio_path="/ws/socket.io", transports=["websocket"], auth={"token": token}, wait_timeout=30
        )
        # `call` waits for the server's acknowledgement, so the subscription is in place when it returns.
        self._client.call("subscribe_queue", {"queue_id": QUEUE}, timeout=30)

    def _on_status(self, data: dict[str, Any]) -> None:
        now = time.perf_counter()  # first: the time it arrived, not the time we got the lock
        with self._cond:
            self.arrivals.setdefault(int(data["item_id"]), {}).setdefault(str(data["status"]), now)
            self._cond.notify_all()

    def _finished(self, item_id: int) -> bool:
        return any(status in self.arrivals.get(item_id, {}) for status in TERMINAL)

    def wait_finished(self, item_ids: Sequence[int], timeout: float) -> list[int]:
        """Wait until every item has a terminal status; returns those still unfinished at the timeout."""
        with self._cond:
            self._cond.wait_for(lambda: all(self._finished(i) for i in item_ids), timeout)
            return [i for i in item_ids if not self._finished(i)]

    def times(self, item_id: int) -> dict[str, float]:
        with self._cond:
            return dict(self.arrivals.get(item_id, {}))

    def close(self) -> None:
        self._client.disconnect()


# ---------------------------------------------------------------------------------------------------------------
# results


@dataclass
class PhaseResult:
    config: str
    phase: str  # "serial" or "burst"
    items: int
    failed: int
    missing: int
    elapsed_s: float  # last terminal event - first enqueue
    cpu_s: dict[str, float]  # server-side CPU seconds by group (see CPU_GROUPS), over the phase
    enqueue_ms: list[float] = field(default_factory=list)  # the enqueue_batch round trip
    to_start_ms: list[float] = field(default_factory=list)  # enqueue -> in_progress event
    to_complete_ms: list[float] = field(default_factory=list)  # enqueue -> completed event
    error_samples: list[str] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def cpu_ms_per_item(self, group: str | None = None) -> float:
        """CPU milliseconds per item of one group, or of all of them."""
        seconds = sum(self.cpu_s.values()) if group is None else self.cpu_s.get(group, 0.0)
        return seconds * 1000 / self.items if self.items else 0.0

    @staticmethod
    def pct(values: list[float], fraction: float) -> float:
        return percentile(sorted(values), fraction)


@dataclass
class Target:
    """One configuration as the client sees it: where to send items, and which processes do the work."""

    name: str
    url: str
    token: str
    clock: EventClock
    cpu_groups: dict[str, list[int]]  # group name (CPU_GROUPS) -> root pids of the processes in it

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def spin_batch(milliseconds: int) -> dict[str, Any]:
    """One ``enqueue_batch`` body: a graph of one ``saas_test_spin`` node, one run."""
    node = {"id": "spin", "type": "saas_test_spin", "milliseconds": milliseconds}
    return {"prepend": False, "batch": {"graph": {"id": "bench-spin", "nodes": {"spin": node}, "edges": []}, "runs": 1}}


# ---------------------------------------------------------------------------------------------------------------
# phases


class Recorder:
    """Enqueue times by item, shared by the submitting threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enqueued: dict[int, tuple[float, float]] = {}  # item_id -> (perf_counter before POST, POST seconds)
        self.errors: list[str] = []

    def submit(self, http: httpx.Client, body: dict[str, Any]) -> int | None:
        before = time.perf_counter()
        try:
            response = http.post(f"/api/v1/queue/{QUEUE}/enqueue_batch", json=body)
        except httpx.HTTPError as e:
            with self.lock:
                self.errors.append(f"enqueue: {type(e).__name__}: {e}"[:300])
            return None
        took = time.perf_counter() - before
        if response.status_code != 200:
            with self.lock:
                self.errors.append(f"enqueue: HTTP {response.status_code} {response.text[:200]}")
            return None
        item_id = int(response.json()["item_ids"][0])
        with self.lock:
            self.enqueued[item_id] = (before, took)
        return item_id


def _cpu(target: Target) -> dict[str, float]:
    return {group: tree_cpu_seconds(pids) for group, pids in target.cpu_groups.items()}


def _finish(target: Target, phase: str, rec: Recorder, cpu_before: dict[str, float], timeout: float) -> PhaseResult:
    ids = sorted(rec.enqueued)
    missing = target.clock.wait_finished(ids, timeout)
    cpu_s = {group: seconds - cpu_before[group] for group, seconds in _cpu(target).items()}
    result = PhaseResult(
        config=target.name, phase=phase, items=0, failed=0, missing=len(missing), elapsed_s=0.0, cpu_s=cpu_s
    )
    result.error_samples = rec.errors[:5]
    first_enqueue = min((t for t, _ in rec.enqueued.values()), default=0.0)
    last_end = first_enqueue
    for item_id in ids:
        enqueued_at, took = rec.enqueued[item_id]
        arrivals = target.clock.times(item_id)
        end = next((arrivals[s] for s in TERMINAL if s in arrivals), None)
        if end is None:
            continue
        result.items += 1
        last_end = max(last_end, end)
        result.enqueue_ms.append(took * 1000)
        if "in_progress" in arrivals:
            result.to_start_ms.append((arrivals["in_progress"] - enqueued_at) * 1000)
        if "completed" in arrivals:
            result.to_complete_ms.append((arrivals["completed"] - enqueued_at) * 1000)
        else:
            result.failed += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(_item_error(target, item_id))
    result.elapsed_s = last_end - first_enqueue
    if missing:
        result.error_samples.append(f"{len(missing)} item(s) without a terminal event after {timeout:.0f}s")
    return result


def _item_error(target: Target, item_id: int) -> str:
    response = httpx.get(f"{target.url}/api/v1/queue/{QUEUE}/i/{item_id}", headers=target.headers, timeout=30)
    if response.status_code != 200:
        return f"item {item_id}: HTTP {response.status_code}"
    item = response.json()
    return f"item {item_id}: {item['status']} {item.get('error_type')}: {(item.get('error_message') or '')[:200]}"


def run_serial(target: Target, items: int, spin_ms: int, timeout: float) -> PhaseResult:
    """One item at a time, each waited for: the latency of a lone user's item on an idle fleet."""
    rec = Recorder()
    body = spin_batch(spin_ms)
    cpu_before = _cpu(target)
    with httpx.Client(base_url=target.url, headers=target.headers, timeout=60) as http:
        for _ in range(items):
            item_id = rec.submit(http, body)
            if item_id is not None:
                target.clock.wait_finished([item_id], timeout)
    return _finish(target, "serial", rec, cpu_before, timeout)


def run_burst(target: Target, items: int, clients: int, spin_ms: int, timeout: float) -> PhaseResult:
    """``items`` items, one per ``enqueue_batch`` call, from ``clients`` threads as fast as they can go; then
    wait for every item to finish."""
    rec = Recorder()
    body = spin_batch(spin_ms)
    next_index = iter(range(items))
    index_lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=target.url, headers=target.headers, timeout=60) as http:
            while True:
                with index_lock:
                    if next(next_index, None) is None:
                        return
                rec.submit(http, body)

    threads = [threading.Thread(target=client, name=f"enqueue-{i}") for i in range(clients)]
    cpu_before = _cpu(target)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _finish(target, "burst", rec, cpu_before, timeout)


def clear_queue(target: Target) -> None:
    """Every phase starts on an empty queue table, whatever the backend."""
    response = httpx.put(f"{target.url}/api/v1/queue/{QUEUE}/clear", headers=target.headers, timeout=60)
    if response.status_code != 200:
        log(f"WARNING: clearing {target.name}'s queue: HTTP {response.status_code} {response.text[:200]}")


# ---------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class Options:
    items: int
    serial_items: int
    warmup_items: int
    clients: int
    workers: list[int]
    spin_ms: int
    stock: bool
    durable: bool
    start_timeout: float
    keep: bool
    quick: bool


BENCH_CREDITS = 10_000_000


def grant_credits(database_url: str, base_url: str, token: str, credits: int) -> None:
    """Grant the signed-in admin ``credits`` through the ledger (as an admin adjustment would) and put them on an
    Enterprise plan whose overrides let one user fill every worker and queue a whole burst."""
    from sqlalchemy import create_engine, text

    from invokeai_saas.credits.ledger import CreditLedger
    from invokeai_saas.db.engine import sync_url

    me = httpx.get(f"{base_url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    me.raise_for_status()
    user_id = str(me.json()["user_id"])
    engine = create_engine(sync_url(database_url))
    try:
        CreditLedger(engine).grant(user_id, credits, "test", "test:benchmark")
        with engine.begin() as conn:  # a customer plan sized for the burst: every worker, the whole burst queued
            conn.execute(
                text(
                    "UPDATE subscriptions SET plan_id = 'enterprise', status = 'active', overrides = "
                    "CAST(:overrides AS jsonb) WHERE user_id = :u"
                ),
                {"u": user_id, "overrides": f'{{"concurrent_jobs": {MAX_RUNNING_PER_USER}, "queue_size": 100000}}'},
            )
    finally:
        engine.dispose()


def admin_token(url: str) -> str:
    """Create the first administrator (both sides run multiuser), log in, return the bearer token."""
    with httpx.Client(base_url=url, timeout=60) as http:
        if http.get("/api/v1/auth/status").json().get("setup_required"):
            setup = {"email": ADMIN_EMAIL, "display_name": "Bench admin", "password": ADMIN_PASSWORD}
            http.post("/api/v1/auth/setup", json=setup).raise_for_status()
        response = http.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        response.raise_for_status()
        return str(response.json()["token"])


def install_node_pack(root: Path) -> None:
    """Install the spin node the way an operator installs custom nodes: a folder under ``<root>/nodes``. Every
    process that validates or runs the graph needs it: the API processes validate, the workers run."""
    shutil.copytree(NODE_PACK, root / "nodes" / NODE_PACK.name, ignore=shutil.ignore_patterns("__pycache__"))


def write_stock_config(root: Path) -> None:
    """Stock's ``invokeai.yaml`` with multiuser on: saas mode forces multiuser, so both sides take the same
    authentication path (a bearer token on every request and on the Socket.IO connection)."""
    from invokeai.app.services.config.config_default import InvokeAIAppConfig

    root.mkdir(parents=True, exist_ok=True)
    InvokeAIAppConfig(multiuser=True).write_file(root / "invokeai.yaml")


class Bench:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.work = make_temp_data_dir("bench-workers-")
        self.results: list[PhaseResult] = []
        self.load_average = os.getloadavg()[0]  # printed with the results: a busy machine skews every number
        self.processes: list[Any] = []  # every managed process we started, in start order
        self.clocks: list[EventClock] = []

    def _start(self, servers: Sequence[Any], what: str) -> None:
        started = time.monotonic()
        self.processes.extend(servers)
        start_together(list(servers), timeout=self.o.start_timeout)
        log(f"{what} up in {time.monotonic() - started:.0f}s")

    def _clock(self, url: str, token: str) -> EventClock:
        clock = EventClock(url, token)
        self.clocks.append(clock)
        return clock

    def run_config(self, target: Target) -> None:
        o = self.o
        timeout = 120 + o.items * o.spin_ms / 1000 * 10
        warm = run_burst(target, o.warmup_items, o.clients, o.spin_ms, timeout)
        log(f"{target.name}: warm-up {warm.items} items ({warm.failed} failed) in {warm.elapsed_s:.1f}s")
        for sample in warm.error_samples:
            log(f"    warm-up error sample: {sample}")
        clear_queue(target)
        for phase in ("serial", "burst"):
            time.sleep(1.0)  # let the previous phase's stragglers (beats, relays, clear) settle
            if phase == "serial":
                result = run_serial(target, o.serial_items, o.spin_ms, timeout)
            else:
                result = run_burst(target, o.items, o.clients, o.spin_ms, timeout)
            self.results.append(result)
            log(
                f"{target.name:7} {phase:6} {result.items:4} items  {result.items_per_s:6.2f} items/s  "
                f"complete p50 {result.pct(result.to_complete_ms, 0.5):7.1f} ms  failed {result.failed}  "
                f"missing {result.missing}"
            )
            for sample in result.error_samples:
                log(f"    error sample: {sample}")
            clear_queue(target)

    def run_stock(self) -> None:
        root = self.work / "stock"
        write_stock_config(root)
        install_node_pack(root)
        env = {**SERVER_ENV, "INVOKEAI_SAAS_DISABLE_HOOK": "1"}  # stock means stock: keep the overlay out
        web = InvokeAIWebServer(root, env=env)
        self._start([web], f"stock invokeai-web ({root})")
        assert web.pid is not None
        token = admin_token(web.url)
        groups = {"api": [web.pid], "workers": [], "services": []}
        self.run_config(Target("stock", web.url, token, self._clock(web.url, token), groups))
        self._close_clocks()
        web.stop(timeout=30)  # its idle threads must not share the cores with the saas configurations

    def run_saas(self) -> None:
        from invokeai_saas.db import migrate

        logs = self.work / "logs"
        pg = PostgresServer(self.work / "postgres", durable=self.o.durable, log_dir=logs)
        redis = RedisServer(self.work / "redis", durable=False, log_dir=logs)
        sqs = SqsServer(self.work / "sqs", log_dir=logs)
        self._start([pg, redis, sqs], "PostgreSQL, Redis, SQS (moto server)")
        migrate.upgrade_url(pg.url)
        settings = {
            "enabled": True,
            "database_url": pg.url,
            "redis_url": redis.url,
            "sqs_endpoint_url": sqs.endpoint_url,
            "sqs_region": sqs.region,
            "sqs_access_key_id": sqs.access_key_id,
            "sqs_secret_access_key": sqs.secret_access_key,
            "max_running_per_user": MAX_RUNNING_PER_USER,
        }
        web_root = self.work / "saas-web"
        web_root.mkdir(parents=True)
        install_node_pack(web_root)
        web = InvokeAIWebServer(web_root, saas_settings=settings, env=dict(SERVER_ENV))
        self._start([web], f"saas invokeai-web ({web_root})")
        token = admin_token(web.url)
        # Credits are on (the hold at enqueue and the settlement are part of the path measured): the benchmark's
        # user gets enough of them for every phase.
        grant_credits(pg.url, web.url, token, BENCH_CREDITS)
        clock = self._clock(web.url, token)
        services = [pid for pid in (pg.pid, redis.pid, sqs.pid) if pid is not None]
        assert web.pid is not None
        workers: list[InvokeAIWorker] = []
        for count in self.o.workers:
            new = []
            for index in range(len(workers), count):
                root = self.work / f"worker-{index}"
                root.mkdir(parents=True)
                install_node_pack(root)
                new.append(InvokeAIWorker(root, saas_settings=settings, env=dict(SERVER_ENV), worker_id=f"w{index}"))
            self._start(new, f"{len(new)} worker(s), {count} in all")
            workers += new
            groups = {"api": [web.pid], "workers": [w.pid for w in workers if w.pid is not None], "services": services}
            self.run_config(Target(f"saas-{count}", web.url, token, clock, groups))

    def run(self) -> None:
        log(f"work dir {self.work}; load average {self.load_average:.2f}")
        if self.o.stock:
            self.run_stock()
        if self.o.workers:
            self.run_saas()

    def _close_clocks(self) -> None:
        while self.clocks:
            try:
                self.clocks.pop().close()
            except Exception as e:  # a dead server must not keep the others running
                log(f"closing a Socket.IO client: {type(e).__name__}: {e}")

    @staticmethod
    def _stop(process: Any) -> None:
        try:
            process.stop(timeout=30)
        except Exception as e:  # keep stopping the rest
            log(f"stopping {process.label}: {type(e).__name__}: {e}")

    def close(self) -> None:
        self._close_clocks()
        # Workers drain on SIGTERM (an idle one finishes its SQS long poll first): stop them side by side, so the
        # waits overlap, then the rest in reverse start order.
        workers = [p for p in self.processes if isinstance(p, InvokeAIWorker)]
        threads = [threading.Thread(target=self._stop, args=(w,), name=f"stop-{w.worker_id}") for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for process in reversed(self.processes):
            self._stop(process)
        if self.o.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# the report


def _ms(values: list[float], fraction: float) -> str:
    return f"{PhaseResult.pct(values, fraction):.1f}" if values else "-"


def _moto_version() -> str:
    try:
        return importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def report(bench: Bench) -> str:
    o = bench.o
    cores = os.cpu_count() or 1
    parts = [
        "",
        "=" * 110,
        f"Graph execution: stock in-process vs saas workers, one run; graph = one saas_test_spin node "
        f"burning {o.spin_ms} ms of CPU{' (--quick)' if o.quick else ''}",
        f"machine: {cores} CPU cores, load average {bench.load_average:.2f} at start; "
        f"PostgreSQL {'durable (fsync on)' if o.durable else 'non-durable (fsync off)'}; "
        f"SQS: moto {_moto_version()} in server mode (moto_server; fauxqs is not available offline)",
        "timing: one clock in the client; enqueue = right before the enqueue_batch POST, start/complete = arrival "
        "of the queue_item_status_changed in_progress/completed Socket.IO events (websocket) on the API process",
        f"serial: {o.serial_items} items one at a time, each waited for; burst: {o.items} items, one per "
        f"enqueue_batch call, from {o.clients} client threads; items/s = items / (last completed - first enqueue)",
        "cpu ms/item: server-side CPU per item over the phase (first enqueue to last event): api = the API process "
        "(stock runs the graphs in it), workers, services = PostgreSQL + Redis + moto (saas only)",
        "",
    ]
    rows = []
    for r in bench.results:
        rows.append(
            [
                r.config,
                r.phase,
                str(r.items),
                f"{r.items_per_s:.2f}",
                _ms(r.enqueue_ms, 0.5),
                _ms(r.to_start_ms, 0.5),
                _ms(r.to_start_ms, 0.95),
                _ms(r.to_complete_ms, 0.5),
                _ms(r.to_complete_ms, 0.95),
                f"{r.cpu_ms_per_item():.1f}",
                *(f"{r.cpu_ms_per_item(group):.1f}" for group in CPU_GROUPS),
                str(r.failed + r.missing),
            ]
        )
    headers = [
        "config", "phase", "items", "items/s", "enqueue ms p50", "to start p50", "to start p95",
        "to complete p50", "to complete p95", "cpu ms/item", *(f"of it {g}" for g in CPU_GROUPS), "failed",
    ]  # fmt: skip
    parts.append(_table(headers, rows, text_columns=2))

    by_key = {(r.config, r.phase): r for r in bench.results}
    ratio_rows = []
    for r in bench.results:
        stock = by_key.get(("stock", r.phase))
        if r.config == "stock" or stock is None:
            continue
        ratio_rows.append(
            [
                f"{r.config}/stock",
                r.phase,
                _ratio(r.items_per_s, stock.items_per_s),
                _ratio(r.pct(r.to_start_ms, 0.5), stock.pct(stock.to_start_ms, 0.5)),
                _ratio(r.pct(r.to_start_ms, 0.95), stock.pct(stock.to_start_ms, 0.95)),
                _ratio(r.pct(r.to_complete_ms, 0.5), stock.pct(stock.to_complete_ms, 0.5)),
                _ratio(r.pct(r.to_complete_ms, 0.95), stock.pct(stock.to_complete_ms, 0.95)),
                _ratio(r.cpu_ms_per_item(), stock.cpu_ms_per_item()),
            ]
        )
    if ratio_rows:
        parts += ["", "ratios (saas / stock; items/s above 1 is better, latency and CPU below 1 are better):", ""]
        ratio_headers = [
            "pair", "phase", "items/s", "to start p50", "to start p95", "to complete p50", "to complete p95",
            "cpu ms/item",
        ]  # fmt: skip
        parts.append(_table(ratio_headers, ratio_rows, text_columns=2))

    stock_serial = by_key.get(("stock", "serial"))
    if stock_serial is not None and stock_serial.to_complete_ms:
        base = stock_serial.pct(stock_serial.to_complete_ms, 0.5)
        parts += ["", f"per-item overhead, serial phase (saas enqueue-to-complete p50 - stock's {base:.1f} ms):"]
        for r in bench.results:
            if r.phase != "serial" or r.config == "stock" or not r.to_complete_ms:
                continue
            extra = r.pct(r.to_complete_ms, 0.5) - base
            verdict = "under" if extra < OVERHEAD_TARGET_MS else "NOT under"
            parts.append(f"  {r.config}: {extra:+.1f} ms ({verdict} the {OVERHEAD_TARGET_MS:.0f} ms target)")
    failures = sum(r.failed + r.missing for r in bench.results)
    if failures:
        parts += ["", f"WARNING: {failures} items failed or never finished; error samples were logged (stderr)"]
    parts.append("=" * 110)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer items: a smoke run")
    parser.add_argument("--items", type=int, help="items per burst phase (full 200, quick 40)")
    parser.add_argument("--serial-items", type=int, help="items in the one-at-a-time phase (full 30, quick 10)")
    parser.add_argument("--warmup-items", type=int, help="unmeasured items before each configuration (default 8)")
    parser.add_argument("--clients", type=int, default=4, help="enqueueing threads in the burst phase (default 4)")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts (default 1,2,4)")
    parser.add_argument("--spin-ms", type=int, default=50, help="CPU milliseconds the graph burns (default 50)")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock configuration")
    parser.add_argument("--pg-nondurable", action="store_true", help="run PostgreSQL with fsync off")
    parser.add_argument("--start-timeout", type=float, default=600, help="seconds each start may take")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (databases, every process's log)")
    args = parser.parse_args(argv)
    try:
        workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        parser.error("--workers takes comma-separated whole numbers, e.g. 1,2,4")
    if workers and workers[0] < 1:
        parser.error("--workers needs positive counts")
    items = args.items if args.items is not None else (40 if args.quick else 200)
    serial = args.serial_items if args.serial_items is not None else (10 if args.quick else 30)
    warmup = args.warmup_items if args.warmup_items is not None else 8
    if min(items, serial, args.clients) < 1 or warmup < 0 or args.spin_ms < 0:
        parser.error("--items, --serial-items and --clients must be positive; --warmup-items, --spin-ms not negative")
    if args.no_stock and not workers:
        parser.error("nothing to run: --no-stock and no --workers")
    return Options(
        items=items,
        serial_items=serial,
        warmup_items=warmup,
        clients=args.clients,
        workers=workers,
        spin_ms=args.spin_ms,
        stock=not args.no_stock,
        durable=not args.pg_nondurable,
        start_timeout=args.start_timeout,
        keep=args.keep,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # Settings in our own environment must not leak into the servers: each config says exactly what it runs.
    for key in [k for k in os.environ if k.startswith("INVOKEAI_")]:
        del os.environ[key]
    bench = Bench(options)
    try:
        bench.run()
    finally:
        bench.close()
        if bench.results:  # on failure too: what was measured before it is still worth reading
            print(report(bench), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
