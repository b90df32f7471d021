"""Building a deployment of real processes for tests: API processes and workers sharing one database, Redis and
SQS, with the test node pack installed in every root (the API validates graphs, workers run them)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.devstack.worker import InvokeAIWorker
from tests.support.invokeai import TEST_ENV

TEST_NODES_DIR = Path(__file__).parent / "saas_test_nodes"


def install_test_nodes(root: Path) -> None:
    """Copy the test node pack into ``root/nodes`` as an operator installs custom nodes."""
    target = root / "nodes" / TEST_NODES_DIR.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TEST_NODES_DIR, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


def web_server(root: Path, settings: Mapping[str, object], env: Mapping[str, str] | None = None) -> InvokeAIWebServer:
    install_test_nodes(root)
    return InvokeAIWebServer(root, saas_settings=settings, env={**TEST_ENV, **(env or {})})


def worker_process(
    root: Path,
    settings: Mapping[str, object],
    models_root: Path,
    *,
    worker_id: str | None = None,
    tiers: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
) -> InvokeAIWorker:
    """A worker whose models directory is ``models_root/models``: the shared models directory of a deployment
    (model records, with paths relative to it, come from PostgreSQL)."""
    install_test_nodes(root)
    return InvokeAIWorker(
        root,
        saas_settings=settings,
        env={**TEST_ENV, "INVOKEAI_MODELS_DIR": str(models_root / "models"), **(env or {})},
        worker_id=worker_id,
        tiers=tiers,
    )
