"""``invokeai-saas worker``: run queue items on this machine (see ``invokeai_saas.worker.process``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _tiers(value: str) -> list[int]:
    try:
        tiers = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("tiers are comma-separated numbers, e.g. 2,1,0") from None
    if not tiers:
        raise argparse.ArgumentTypeError("name at least one tier")
    return tiers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", "-r", help="InvokeAI root with invokeai.yaml and saas.yaml (default: $INVOKEAI_ROOT)")
    parser.add_argument("--tiers", type=_tiers, help="scheduling tiers this worker serves (default: all)")
    parser.add_argument("--worker-id", help="the id this worker registers under (default: host-pid-random)")


def run(args: argparse.Namespace) -> int:
    root = args.root or os.environ.get("INVOKEAI_ROOT")
    if not root:
        print("invokeai-saas worker: pass --root or set INVOKEAI_ROOT", flush=True)
        return 2
    from invokeai_saas.worker.process import main

    return main(Path(root).expanduser().absolute(), args.tiers, args.worker_id)
