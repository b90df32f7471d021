"""``invokeai-saas worker``: a process that runs queue items, with InvokeAI's own services and processor.

The worker builds its services exactly as ``invokeai-web`` does — stock ``ApiDependencies.initialize`` with the
saas patches applied by the same activation hook — so models, images, boards and events behave as in the API
process. Two things differ, both through the plugins: the session queue claims items for dispatch messages
(``WorkerSessionQueue``), and there is no FastAPI app: the event loop runs on a thread of its own and stock's
in-process event handlers (the processor's cancel handling among them) are registered on it directly. The
Redis relay replays the API processes' events into it, which is how a cancel reaches the running item.

The main thread beats: registry row, lease renewals, message visibility, the fleet's pause switch. The lease
renewal also reads each held item's status in PostgreSQL, so an item deleted, canceled or failed elsewhere, or
taken over after missed beats, is stopped within one beat whether or not its event came through Redis, and is
logged once with the reason. The beat also checks stock's processing threads are alive: a dead one makes the
worker ``unhealthy`` until its item is handed back and the thread restarted (``processor_threads``). SIGTERM
drains: no new messages; the current item may finish for ``worker_drain_seconds``, then it is handed back.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
import threading
import time
import uuid
from argparse import Namespace
from logging import Logger
from pathlib import Path
from types import FrameType
from typing import Any

from invokeai_saas.dispatch.fleet import FleetState, WorkerInfo, WorkerRegistry
from invokeai_saas.patches.session_processor_default_workers import cancel_item
from invokeai_saas.runtime import WorkerRole, set_worker_role
from invokeai_saas.worker.processor_threads import ProcessorThreads, ProcessorThreadsFailing

# The exit status of a worker whose processing threads kept dying: its supervisor should start a fresh process.
EXIT_PROCESSOR_FAILING = 3

_STOP_MESSAGES = {
    "deleted": "Queue item {} was deleted; stopping it here",
    "canceled": "Queue item {} was canceled; stopping it here",
    "failed": "Queue item {} was failed by another process; stopping it here",
    "taken over": "Lost the lease on queue item {} (taken over by another worker after missed beats); stopping it here",
}


class WorkerStartError(RuntimeError):
    """The worker cannot start with this configuration; the message says what to fix."""


def _configure_invokeai(root: Path) -> Any:
    """Parse InvokeAI's configuration as ``invokeai-web`` does for ``--root ROOT``."""
    from invokeai.frontend.cli.arg_parser import InvokeAIArgs

    InvokeAIArgs.args = Namespace(root=str(root), config_file=None)
    InvokeAIArgs.did_parse = True
    from invokeai.app.services.config.config_default import get_config

    return get_config()


def _gpu(device: Any) -> tuple[str | None, int | None]:
    import torch

    if getattr(device, "type", None) == "cuda" and torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(device)
        return str(properties.name), int(properties.total_memory)
    return None, None


class Worker:
    """One worker process: services, beats, signals. ``run`` returns the exit status."""

    def __init__(self, root: Path, tiers: list[int] | None, worker_id: str | None) -> None:
        self.root = root
        self.requested_tiers = tiers
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def run(self) -> int:
        config = _configure_invokeai(self.root)
        from invokeai.backend.util.logging import InvokeAILogger

        from invokeai_saas.config import load_settings

        logger = InvokeAILogger.get_logger("invokeai-saas-worker", config=config)
        settings = load_settings(config.config_file_path)
        if not (settings.enabled and settings.sqs_active and settings.database_url and settings.redis_url):
            raise WorkerStartError(
                "a worker needs saas mode with SQS, PostgreSQL and Redis configured (enabled, sqs_endpoint_url or "
                "sqs_enabled, database_url, redis_url) in the saas settings of --root"
            )
        tiers = tuple(self.requested_tiers or range(settings.scheduling_tiers))
        if any(t < 0 or t >= settings.scheduling_tiers for t in tiers):
            raise WorkerStartError(f"--tiers must be within 0..{settings.scheduling_tiers - 1}")
        set_worker_role(WorkerRole(self.worker_id, tiers))

        if config.pytorch_cuda_alloc_conf:
            from invokeai.app.util.torch_cuda_allocator import configure_torch_cuda_allocator

            configure_torch_cuda_allocator(config.pytorch_cuda_alloc_conf, logger)
        from invokeai.app.util.startup_utils import apply_monkeypatches, register_mime_types

        apply_monkeypatches()
        register_mime_types()

        # Importing the dependencies module runs the saas activation (patches, plugins) as in invokeai-web.
        from invokeai.app.api.dependencies import ApiDependencies
        from invokeai.app.invocations.load_custom_nodes import load_custom_nodes
        from invokeai.backend.util.devices import TorchDevice

        from invokeai_saas.db.engine import get_engine

        load_custom_nodes(custom_nodes_path=config.custom_nodes_path, logger=logger)
        device = TorchDevice.choose_torch_device()
        gpu_name, gpu_memory = _gpu(device)
        engine = get_engine(settings)
        registry = WorkerRegistry(engine, settings.worker_lease_seconds)
        registry.register(
            WorkerInfo(self.worker_id, socket.gethostname(), os.getpid(), str(device), gpu_name, gpu_memory, tiers)
        )
        fleet = FleetState(engine)

        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

        loop = asyncio.new_event_loop()
        self._loop = loop
        event_handler_id = id(self)
        from fastapi_events import handler_store
        from fastapi_events.handlers.local import local_handler

        # What EventHandlerASGIMiddleware does for the web app: stock's handlers (registered on local_handler by
        # the session processor and others) receive the events this process dispatches or the relay replays.
        handler_store[event_handler_id] = [local_handler]
        queue = None
        exit_code = 0
        try:
            ApiDependencies.initialize(config=config, event_handler_id=event_handler_id, loop=loop, logger=logger)
            loop_thread = threading.Thread(target=loop.run_forever, name="invokeai-saas-worker-events", daemon=True)
            loop_thread.start()
            _freeze_startup_objects()
            services = ApiDependencies.invoker.services
            queue = services.session_queue
            from invokeai_saas.services.session_queue.session_queue_worker import WorkerSessionQueue

            if not isinstance(queue, WorkerSessionQueue):
                raise WorkerStartError("the sqs plugin is disabled: this process cannot claim queue items")
            logger.info(f"Worker {self.worker_id} started on {device}, tiers {list(tiers)}")
            drain_seconds = settings.worker_drain_seconds
            try:
                self._beat_until_stopped(queue, services.session_processor, registry, fleet, settings, logger)
            except ProcessorThreadsFailing as e:
                logger.error(f"Worker {self.worker_id}: {e}; handing back its items and exiting for a restart")
                exit_code, drain_seconds = EXIT_PROCESSOR_FAILING, 0.0
            self._drain(queue, services.session_processor, registry, settings, drain_seconds, logger)
        finally:
            registry.deregister(self.worker_id)
            try:
                ApiDependencies.shutdown()
            finally:
                loop.call_soon_threadsafe(loop.stop)
        logger.info(f"Worker {self.worker_id} stopped")
        return exit_code

    def _beat_until_stopped(
        self, queue: Any, processor: Any, registry: WorkerRegistry, fleet: FleetState, settings: Any, logger: Logger
    ) -> None:
        threads = ProcessorThreads(processor, queue, logger)
        last_renewed = time.monotonic()
        unrenewed: set[int] = set()
        while not self._stop.is_set():
            try:
                dead = threads.dead()
                paused = fleet.is_paused()
                queue.set_paused(paused)
                stopped = queue.beat()
                last_renewed = time.monotonic()
                unrenewed.clear()
                for item in stopped:
                    if item.first:
                        # A user's cancel or delete is routine; a stop by another process, or a takeover, is not.
                        log = {"taken over": logger.error, "failed": logger.warning}.get(item.reason, logger.info)
                        log(_STOP_MESSAGES[item.reason].format(item.item_id))
                    cancel_item(processor, item.item_id)
                current = queue.current_item_ids()
                if dead:
                    state = "unhealthy"
                else:
                    state = "busy" if current else ("paused" if paused else "idle")
                registry.beat(self.worker_id, state, current[0] if current else None)
                if dead:
                    threads.recover(dead)
            except ProcessorThreadsFailing:
                raise
            except Exception as e:
                logger.warning(f"Worker beat failed ({type(e).__name__}: {_first_line(e)})")
                if time.monotonic() - last_renewed > settings.worker_lease_seconds:
                    # The database is unreachable: the reaper may take these items over any moment now, and two
                    # workers must never run one item. Stop them here first.
                    for item_id in queue.current_item_ids():
                        if item_id not in unrenewed:
                            unrenewed.add(item_id)
                            logger.error(f"Could not renew the lease on queue item {item_id}; stopping it here")
                        queue.run_unrecorded(item_id)
                        cancel_item(processor, item_id)
            self._stop.wait(settings.worker_heartbeat_seconds)

    def _drain(
        self, queue: Any, processor: Any, registry: WorkerRegistry, settings: Any, seconds: float, logger: Logger
    ) -> None:
        """Take no new work; let the current item finish for ``seconds``, then hand back what is still running."""
        queue.drain()
        logger.info(f"Worker {self.worker_id} draining (up to {seconds:.0f}s)")
        deadline = time.monotonic() + seconds
        while queue.current_item_ids() and time.monotonic() < deadline:
            current = queue.current_item_ids()
            registry.beat(self.worker_id, "draining", current[0] if current else None)
            for item in queue.beat():
                cancel_item(processor, item.item_id)
            time.sleep(min(settings.worker_heartbeat_seconds, 0.2))
        for item_id in queue.current_item_ids():
            handed_back = queue.hand_back(item_id)
            logger.warning(
                f"Queue item {item_id} {'handed back to the queue' if handed_back else 'stopped'} at shutdown"
            )
            cancel_item(processor, item_id)
        processor.stop()


def _freeze_startup_objects() -> None:
    """Stock's processor runs a full ``gc.collect()`` before every item to keep peak memory down. In a process
    that imported all of InvokeAI that walks about a million long-lived objects (modules, classes, the node
    registry) and costs about half a second of CPU per item, more than a small graph itself. Moving everything
    alive after startup into the permanent generation (``gc.freeze``) leaves the per-item collection to what
    the items allocate, which is what it is there for."""
    gc.collect()
    gc.freeze()


def _first_line(error: Exception) -> str:
    """The error's first line: a driver's message goes on with the SQL statement, which the log does not need."""
    return str(error).split("\n", 1)[0]


def main(root: Path, tiers: list[int] | None, worker_id: str | None) -> int:
    try:
        return Worker(root, tiers, worker_id).run()
    except WorkerStartError as e:
        print(f"invokeai-saas worker: {e}", file=sys.stderr, flush=True)
        return 2
