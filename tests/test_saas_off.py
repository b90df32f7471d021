"""With the package installed and saas mode off, ``invokeai-web`` is stock InvokeAI.

Two real processes side by side: one with the activation hook switched off entirely
(``INVOKEAI_SAAS_DISABLE_HOOK=1`` — as if the package were not installed) and one with the hook
installed but no saas configuration. Every route and every response must be the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.invokeai import TEST_ENV

# Single-user mode (stock default) serves these without a token.
COMPARED_GETS = [
    "/api/v1/app/version",
    "/api/v1/app/app_deps",
    "/api/v1/app/patchmatch_status",
    "/api/v1/app/invocation_cache/status",
    "/api/v1/auth/status",
    "/api/v1/queue/default/status",
    "/api/v1/queue/default/list_all",
    "/api/v1/boards/?all=true",
    "/api/v1/images/?limit=10",
    "/api/v2/models/",
    "/api/v1/workflows/?page=0&per_page=10",
    "/api/v1/style_presets/",
    "/api/v1/saas/health",
    "/api/v1/no-such-route",
]


@pytest.fixture(scope="module")
def stock_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InvokeAIWebServer, InvokeAIWebServer]]:
    without = InvokeAIWebServer(
        tmp_path_factory.mktemp("no-hook-root"), env={**TEST_ENV, "INVOKEAI_SAAS_DISABLE_HOOK": "1"}
    )
    installed = InvokeAIWebServer(tmp_path_factory.mktemp("saas-off-root"), env=dict(TEST_ENV))
    # Booted side by side (InvokeAI takes a while to import) from this thread, which outlives both.
    start_together([without, installed], timeout=240)
    try:
        yield without, installed
    finally:
        without.stop(timeout=30)
        installed.stop(timeout=30)


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?")


def _normalise(text: str, root: Path) -> str:
    """Only what differs between two installs by construction: root folders, creation times, random ids."""
    return UUID.sub("<UUID>", TIMESTAMP.sub("<TIME>", text.replace(str(root), "<ROOT>")))


def test_same_openapi_schema(stock_pair: tuple[InvokeAIWebServer, InvokeAIWebServer]) -> None:
    without, installed = stock_pair
    a = httpx.get(f"{without.url}/openapi.json", timeout=60).json()
    b = httpx.get(f"{installed.url}/openapi.json", timeout=60).json()
    assert a == b
    assert not any(path.startswith("/api/v1/saas") for path in b["paths"])


@pytest.mark.parametrize("path", COMPARED_GETS)
def test_same_responses(stock_pair: tuple[InvokeAIWebServer, InvokeAIWebServer], path: str) -> None:
    without, installed = stock_pair
    a = httpx.get(f"{without.url}{path}", timeout=60)
    b = httpx.get(f"{installed.url}{path}", timeout=60)
    assert a.status_code == b.status_code
    assert _normalise(a.text, without.root) == _normalise(b.text, installed.root)


def test_same_ui_and_same_socketio_behaviour(stock_pair: tuple[InvokeAIWebServer, InvokeAIWebServer]) -> None:
    """Even stock's gzip defect on the Socket.IO handshake is left as it is when saas mode is off."""
    without, installed = stock_pair
    assert httpx.get(f"{without.url}/", timeout=60).text == httpx.get(f"{installed.url}/", timeout=60).text
    params = {"EIO": "4", "transport": "polling"}
    for headers in ({}, {"Accept-Encoding": "gzip"}):
        a = httpx.get(f"{without.url}/ws/socket.io/", params=params, headers=headers, timeout=60)
        b = httpx.get(f"{installed.url}/ws/socket.io/", params=params, headers=headers, timeout=60)
        assert a.status_code == b.status_code
    assert b.status_code == 500  # the upstream defect that saas mode fixes (see test_saas_mode)


def test_multiuser_stays_off(stock_pair: tuple[InvokeAIWebServer, InvokeAIWebServer]) -> None:
    _, installed = stock_pair
    assert httpx.get(f"{installed.url}/api/v1/auth/status", timeout=60).json()["multiuser_enabled"] is False


def test_no_saas_yaml_written(stock_pair: tuple[InvokeAIWebServer, InvokeAIWebServer]) -> None:
    _, installed = stock_pair
    assert not (installed.root / "saas.yaml").exists()
    assert "saas" not in (installed.root / "invokeai.yaml").read_text()
