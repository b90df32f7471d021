"""``invokeai-saas dev``: the whole local stack, stock ``invokeai-web`` in saas mode and a worker, on 127.0.0.1.

PostgreSQL, Redis, SeaweedFS (S3), an SQS server (moto) and a Stripe stand-in (localstripe) keep their
data under ``--data-dir`` between runs; ``saas.yaml`` is rewritten at every start so it always points
at the ports in use. With SQS configured the web server never runs graphs itself: ``--workers`` worker
processes (default 1) run them, sharing the web root's models directory. Ctrl-C or SIGTERM stops every child,
workers first (each hands back what it runs), then the web server. Problems a developer can
fix (a busy port, a missing package) are reported in one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from invokeai_saas.db import migrate
from invokeai_saas.devstack import DevStackError, LocalStack
from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.devstack.worker import InvokeAIWorker

DEFAULT_PORTS = {"postgres": 15432, "redis": 16379, "s3": 18333, "sqs": 19324, "stripe": 18420}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=".saas-dev", help="where all data and logs live (default: .saas-dev)")
    parser.add_argument("--port", type=int, default=9090, help="invokeai-web port (default: 9090)")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port, help=f"{name} port (default: {port})")
    parser.add_argument("--workers", type=int, default=1, help="worker processes to run (default: 1)")
    parser.add_argument("--startup-timeout", type=float, default=300, help="seconds to wait for invokeai-web")


class _Stop(Exception):
    """Raised from the signal handlers so every ``finally`` runs on Ctrl-C and SIGTERM alike."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _admin_line(url: str, root: Path) -> str:
    """How to sign in; new accounts (the administrator's too) start on Trial, so also how to lift its limits."""
    plan_hint = (
        "\n  the administrator starts on Trial (500 credits, 7 days); for local work put them on Tester:\n"
        f"             invokeai-saas user --root {root} modify --email <admin email> --plan tester"
    )
    try:
        with urllib.request.urlopen(f"{url}/api/v1/auth/status", timeout=5) as response:
            status = json.loads(response.read())
    except OSError:
        status = {"setup_required": True}
    if status.get("setup_required", True):
        return (
            "  first run: open the URL and create the administrator account on the setup page, or\n"
            f"             curl -X POST {url}/api/v1/auth/setup -H 'Content-Type: application/json' \\\n"
            '               -d \'{"email": "admin@example.com", "password": "Choose-a-long-passw0rd"}\''
            f"{plan_hint}"
        )
    return f"  sign in as: {status.get('admin_email') or 'your administrator account'}{plan_hint}"


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).absolute()
    ports = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    web = InvokeAIWebServer(data_dir / "invokeai", args.port, log_dir=data_dir / "logs")
    workers: list[InvokeAIWorker] = []
    stack = LocalStack(data_dir / "stack", ports=ports)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        web.check_prerequisites()
        web.check_ports()
        print(f"invokeai-saas dev: starting PostgreSQL, Redis, S3, SQS and Stripe stand-in in {data_dir}", flush=True)
        stack.start()
        # On a developer's box the latest schema is always what is wanted.
        migrate.upgrade_url(str(stack.saas_settings()["database_url"]))
        settings = {"enabled": True, **stack.saas_settings()}
        web.saas_settings = settings
        workers = [
            InvokeAIWorker(
                data_dir / f"worker-{index}",
                saas_settings=settings,
                env={"INVOKEAI_MODELS_DIR": str(web.root / "models")},
                worker_id=f"dev-worker-{index}",
                log_dir=data_dir / "logs",
            )
            for index in range(max(0, args.workers))
        ]
        print(
            f"invokeai-saas dev: starting invokeai-web in saas mode and {len(workers)} worker(s) "
            "(first start takes a minute)",
            flush=True,
        )
        start_together([web, *workers], timeout=args.startup_timeout)
        print(
            f"\nInvokeAI (saas mode) is running at {web.url}\n"
            f"  health:    {web.url}/api/v1/saas/health\n"
            f"  workers:   {', '.join(w.worker_id for w in workers) or 'none (--workers 0): queue items wait'}\n"
            f"{_admin_line(web.url, web.root)}\n"
            f"  data:      {data_dir} (kept between runs); logs in {data_dir / 'logs'}\n"
            "Press Ctrl-C to stop everything.",
            flush=True,
        )
        while web.is_running():
            time.sleep(0.5)
        print(f"invokeai-saas dev: invokeai-web stopped on its own; see {web.log_path}", file=sys.stderr)
        return 1
    except _Stop:
        print("\ninvokeai-saas dev: stopping", flush=True)
        return 0
    except DevStackError as e:
        print(f"invokeai-saas dev: {e}", file=sys.stderr)
        return 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        try:
            for worker in workers:
                worker.stop(timeout=60)
            web.stop(timeout=30)
        finally:
            stack.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
