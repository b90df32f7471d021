"""``invokeai-saas dev``: the whole local stack and stock ``invokeai-web`` in saas mode, on 127.0.0.1.

PostgreSQL, Redis, SeaweedFS (S3), an SQS server (moto) and a Stripe stand-in (localstripe) keep their
data under ``--data-dir`` between runs; ``saas.yaml`` is rewritten at every start so it always points
at the ports in use. Ctrl-C or SIGTERM stops every child, web server first. Problems a developer can
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
from invokeai_saas.devstack.web import InvokeAIWebServer

DEFAULT_PORTS = {"postgres": 15432, "redis": 16379, "s3": 18333, "sqs": 19324, "stripe": 18420}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=".saas-dev", help="where all data and logs live (default: .saas-dev)")
    parser.add_argument("--port", type=int, default=9090, help="invokeai-web port (default: 9090)")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port, help=f"{name} port (default: {port})")
    parser.add_argument("--startup-timeout", type=float, default=300, help="seconds to wait for invokeai-web")


class _Stop(Exception):
    """Raised from the signal handlers so every ``finally`` runs on Ctrl-C and SIGTERM alike."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _admin_line(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/auth/status", timeout=5) as response:
            status = json.loads(response.read())
    except OSError:
        status = {"setup_required": True}
    if status.get("setup_required", True):
        return (
            "  first run: open the URL and create the administrator account on the setup page, or\n"
            f"             curl -X POST {url}/api/v1/auth/setup -H 'Content-Type: application/json' \\\n"
            '               -d \'{"email": "admin@example.com", "password": "a long password"}\''
        )
    return f"  sign in as: {status.get('admin_email') or 'your administrator account'}"


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).absolute()
    ports = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    web = InvokeAIWebServer(data_dir / "invokeai", args.port, log_dir=data_dir / "logs")
    stack = LocalStack(data_dir / "stack", ports=ports)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        web.check_prerequisites()
        web.check_ports()
        print(f"invokeai-saas dev: starting PostgreSQL, Redis, S3, SQS and Stripe stand-in in {data_dir}", flush=True)
        stack.start()
        # On a developer's box the latest schema is always what is wanted.
        migrate.upgrade_url(str(stack.saas_settings()["database_url"]))
        web.saas_settings = {"enabled": True, **stack.saas_settings()}
        print("invokeai-saas dev: starting invokeai-web in saas mode (first start takes a minute)", flush=True)
        web.start(timeout=args.startup_timeout)
        print(
            f"\nInvokeAI (saas mode) is running at {web.url}\n"
            f"  health:    {web.url}/api/v1/saas/health\n"
            f"{_admin_line(web.url)}\n"
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
            web.stop(timeout=30)
        finally:
            stack.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
