"""Saas mode refuses the stock routes that would run uploaded code or a model inside the API process.

Against the real ``saas_web`` server (SQS dispatch is active there, so both refusals apply): the refusal is a
plain 403 JSON body, stock's auth still answers first (401 anonymous, 403 for a non-admin on admin routes), the
stock OpenAPI contract stays, and no pack code ever runs: a real git repository and a pack in the nodes folder
whose import would write a marker file stay untouched.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from invokeai_saas.config import SaasSettings
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.routes.refused_routes import (
    CUSTOM_NODES_REFUSED,
    IN_PROCESS_MODEL_REFUSED,
    custom_node_refusals_router,
    in_process_model_refusals_router,
    refusal_overrides,
)
from tests.support.invokeai import admin_token

CUSTOM_NODES = "/api/v2/custom_nodes"
EXPAND_PROMPT = "/api/v1/utilities/expand-prompt"
IMAGE_TO_PROMPT = "/api/v1/utilities/image-to-prompt"


@dataclass(frozen=True)
class Clients:
    admin: httpx.Client
    user: httpx.Client
    anonymous: httpx.Client


@dataclass(frozen=True)
class Pack:
    """A node pack whose import writes ``marker``: if the marker exists, the server ran the pack's code."""

    name: str
    marker: Path


@pytest.fixture(scope="module")
def clients(saas_web: InvokeAIWebServer) -> Iterator[Clients]:
    admin_headers = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    email, password = f"refusals-{uuid.uuid4().hex[:8]}@example.com", "Refusals-user-password-42"
    r = httpx.post(
        f"{saas_web.url}/api/v1/auth/users",
        json={"email": email, "display_name": "Refusals", "password": password},
        headers=admin_headers,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    r = httpx.post(f"{saas_web.url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    user_headers = {"Authorization": f"Bearer {r.json()['token']}"}
    with (
        httpx.Client(base_url=saas_web.url, headers=admin_headers, timeout=30) as admin,
        httpx.Client(base_url=saas_web.url, headers=user_headers, timeout=30) as user,
        httpx.Client(base_url=saas_web.url, timeout=30) as anonymous,
    ):
        yield Clients(admin, user, anonymous)


def _write_pack(directory: Path, marker: Path) -> None:
    directory.mkdir(parents=True)
    (directory / "__init__.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")


@pytest.fixture()
def git_pack(tmp_path: Path) -> tuple[Pack, Path]:
    """A real git repository holding a pack, as the install route would clone it."""
    name = f"refused_pack_{uuid.uuid4().hex[:8]}"
    repo, marker = tmp_path / name, tmp_path / "installed-pack-ran"
    _write_pack(repo, marker)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "pack"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    return Pack(name, marker), repo


@pytest.fixture()
def nodes_folder_pack(clients: Clients, tmp_path: Path) -> Iterator[tuple[Pack, Path]]:
    """A pack already in the server's nodes folder (as an operator would ship it), not yet imported."""
    r = clients.admin.get(f"{CUSTOM_NODES}/")
    assert r.status_code == 200, r.text
    name = f"operator_pack_{uuid.uuid4().hex[:8]}"
    directory = Path(r.json()["custom_nodes_path"]) / name
    pack = Pack(name, tmp_path / "operator-pack-ran")
    _write_pack(directory, pack.marker)
    try:
        yield pack, directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _assert_refused(r: httpx.Response, detail: str) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": detail}


def test_admin_cannot_install_a_pack(clients: Clients, git_pack: tuple[Pack, Path]) -> None:
    pack, repo = git_pack
    _assert_refused(clients.admin.post(f"{CUSTOM_NODES}/install", json={"source": str(repo)}), CUSTOM_NODES_REFUSED)
    assert not pack.marker.exists()
    listed = clients.admin.get(f"{CUSTOM_NODES}/").json()
    assert pack.name not in {p["name"] for p in listed["node_packs"]}
    assert not (Path(listed["custom_nodes_path"]) / pack.name).exists()


def test_admin_cannot_reload_or_uninstall_packs(clients: Clients, nodes_folder_pack: tuple[Pack, Path]) -> None:
    pack, directory = nodes_folder_pack
    _assert_refused(clients.admin.post(f"{CUSTOM_NODES}/reload"), CUSTOM_NODES_REFUSED)
    assert not pack.marker.exists()
    _assert_refused(clients.admin.delete(f"{CUSTOM_NODES}/{pack.name}"), CUSTOM_NODES_REFUSED)
    assert (directory / "__init__.py").exists()


def test_pack_list_still_answers(clients: Clients, nodes_folder_pack: tuple[Pack, Path]) -> None:
    pack, _ = nodes_folder_pack
    r = clients.admin.get(f"{CUSTOM_NODES}/")
    assert r.status_code == 200, r.text
    assert pack.name in {p["name"] for p in r.json()["node_packs"]}


def test_stock_auth_answers_before_the_refusal(clients: Clients) -> None:
    install = ("POST", f"{CUSTOM_NODES}/install", {"source": "https://example.com/pack.git"})
    for method, path, body in [
        install,
        ("POST", f"{CUSTOM_NODES}/reload", None),
        ("DELETE", f"{CUSTOM_NODES}/some_pack", None),
        ("GET", f"{CUSTOM_NODES}/", None),
        ("POST", EXPAND_PROMPT, {"prompt": "a cat", "model_key": "any"}),
        ("POST", IMAGE_TO_PROMPT, {"image_name": "any.png", "model_key": "any"}),
    ]:
        r = clients.anonymous.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
    method, path, body = install
    r = clients.user.request(method, path, json=body)
    assert r.status_code == 403 and r.json() == {"detail": "Admin privileges required"}, r.text


def test_models_are_not_run_in_the_api_process(clients: Clients) -> None:
    expand = clients.user.post(EXPAND_PROMPT, json={"prompt": "a cat", "model_key": "any-model"})
    _assert_refused(expand, IN_PROCESS_MODEL_REFUSED)
    describe = clients.user.post(IMAGE_TO_PROMPT, json={"image_name": "any.png", "model_key": "any-model"})
    _assert_refused(describe, IN_PROCESS_MODEL_REFUSED)
    for r in (expand, describe):
        assert "Traceback" not in r.text and "/site-packages/" not in r.text


def test_request_bodies_are_still_validated_as_stock(clients: Clients) -> None:
    r = clients.user.post(EXPAND_PROMPT, json={"prompt": "a cat", "model_key": "m", "max_tokens": 0})
    assert r.status_code == 422, r.text
    r = clients.user.post(IMAGE_TO_PROMPT, json={"model_key": "m"})
    assert r.status_code == 422, r.text
    r = clients.admin.post(f"{CUSTOM_NODES}/install", json={})
    assert r.status_code == 422, r.text


def test_openapi_keeps_the_stock_operations(clients: Clients) -> None:
    r = clients.anonymous.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    operations = {
        (f"{CUSTOM_NODES}/", "get"): ("list_custom_node_packs", None),
        (f"{CUSTOM_NODES}/install", "post"): ("install_custom_node_pack", "InstallNodePackRequest"),
        (f"{CUSTOM_NODES}/{{pack_name}}", "delete"): ("uninstall_custom_node_pack", None),
        (f"{CUSTOM_NODES}/reload", "post"): ("reload_custom_nodes", None),
        (EXPAND_PROMPT, "post"): ("expand_prompt", "ExpandPromptRequest"),
        (IMAGE_TO_PROMPT, "post"): ("image_to_prompt", "ImageToPromptRequest"),
    }
    for (path, method), (operation_id, body_model) in operations.items():
        operation = paths[path][method]
        assert operation["operationId"] == operation_id
        if body_model is not None:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert schema["$ref"] == f"#/components/schemas/{body_model}"
    assert paths[f"{CUSTOM_NODES}/install"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InstallNodePackResponse"
    }
    uninstall_parameters = paths[f"{CUSTOM_NODES}/{{pack_name}}"]["delete"]["parameters"]
    assert [(p["name"], p["in"]) for p in uninstall_parameters] == [("pack_name", "path")]


def test_model_refusal_only_with_sqs_dispatch() -> None:
    without_sqs = refusal_overrides(SaasSettings(enabled=True))
    with_sqs = refusal_overrides(SaasSettings(enabled=True, sqs_endpoint_url="http://127.0.0.1:9324"))
    assert without_sqs == [custom_node_refusals_router]
    assert with_sqs == [custom_node_refusals_router, in_process_model_refusals_router]
