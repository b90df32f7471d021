"""Driving a real ``invokeai-web`` over HTTP: first-admin setup, login, a simple graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

SUPPORT_DIR = Path(__file__).parent
REPO = SUPPORT_DIR.parent.parent
ENTRY_POINT_PLUGIN_DIR = SUPPORT_DIR / "entry_point_plugin"

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct-Horse-battery-staple-42"

# Environment every test server gets: no network, quiet tokenizers, no hub look-ups.
TEST_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "INVOKEAI_LOG_LEVEL": "warning"}


def admin_token(base_url: str) -> str:
    """Create the first administrator if needed, then log in; returns the bearer token."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        status = client.get("/api/v1/auth/status").json()
        if status["setup_required"]:
            r = client.post(
                "/api/v1/auth/setup",
                json={"email": ADMIN_EMAIL, "display_name": "Admin", "password": ADMIN_PASSWORD},
            )
            r.raise_for_status()
        r = client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        r.raise_for_status()
        return str(r.json()["token"])


def add_graph_batch(a: int = 2, b: int = 3) -> dict[str, Any]:
    """A batch with one ``add`` node: a real graph that needs no model weights."""
    return {
        "prepend": False,
        "batch": {
            "graph": {
                "id": "saas-test-add",
                "nodes": {"add": {"id": "add", "type": "add", "a": a, "b": b}},
                "edges": [],
            },
            "runs": 1,
        },
    }


def upload_image(base_url: str, headers: dict[str, str], data: bytes) -> httpx.Response:
    """Stock's image upload route, as the studio calls it for a user image."""
    return httpx.post(
        f"{base_url}/api/v1/images/upload",
        params={"image_category": "user", "is_intermediate": "false"},
        files={"file": ("upload.png", data, "image/png")},
        headers=headers,
        timeout=60,
    )


def run_marked_python(args: list[str], marker: str, timeout: float) -> Any:
    """Run ``python ARGS`` from the repository in a fresh process (a stock app, imported from scratch) and return
    the JSON after the last line starting with ``marker``; fails with the process's output if there is none."""
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    lines = [line for line in r.stdout.splitlines() if line.startswith(f"{marker} ")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(lines[-1].split(" ", 1)[1])


def empty_workflow(name: str) -> dict[str, Any]:
    """A stock workflow document with no nodes: what the studio saves, minimal."""
    return {
        "name": name,
        "author": "",
        "description": "",
        "version": "1.0.0",
        "contact": "",
        "tags": "",
        "notes": "",
        "exposedFields": [],
        "meta": {"version": "3.0.0", "category": "user"},
        "nodes": [],
        "edges": [],
    }
