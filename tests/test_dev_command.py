"""``invokeai-saas dev``: the whole local stack plus stock invokeai-web in saas mode, as a developer runs it."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from invokeai_saas.devstack import SERVER_NAMES, free_port, make_temp_data_dir
from invokeai_saas.devstack.ports import port_is_free
from tests.support.invokeai import TEST_ENV, add_graph_batch, admin_token

CLI = str(Path(sys.executable).parent / "invokeai-saas")


@pytest.fixture()
def data_dir() -> Iterator[Path]:
    path = make_temp_data_dir("saas-dev-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _port_args() -> tuple[list[str], dict[str, int]]:
    ports = {"web": free_port(), **{name: free_port() for name in SERVER_NAMES}}
    args = ["--port", str(ports["web"])]
    for name in SERVER_NAMES:
        args += [f"--{name}-port", str(ports[name])]
    return args, ports


def _start_dev(data_dir: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLI, "dev", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **TEST_ENV, **(env or {})},
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Collect the command's output until ``marker`` has been printed and the banner after it is complete."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = ""
    deadline = time.monotonic() + timeout
    marker_at: float | None = None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
        if marker_at is None and marker in seen:
            marker_at = time.monotonic()
        if marker_at is not None and ("Ctrl-C" in seen or time.monotonic() - marker_at > 5):
            return seen
    raise AssertionError(f"{marker!r} not printed; output was:\n{seen}")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _assert_everything_stopped(data_dir: Path, ports: dict[str, int]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _processes_mentioning(str(data_dir)):
        time.sleep(0.2)
    assert _processes_mentioning(str(data_dir)) == []
    assert all(port_is_free(p) for p in ports.values()), ports


def test_dev_runs_stack_and_saas_web_then_stops_everything(data_dir: Path) -> None:
    args, ports = _port_args()
    base = f"http://127.0.0.1:{ports['web']}"

    proc = _start_dev(data_dir, args)
    try:
        banner = _read_until(proc, "is running at", timeout=300)
        assert base in banner
        assert "/api/v1/auth/setup" in banner  # the first-admin step
        assert f"invokeai-saas user --root {data_dir / 'invokeai'} modify" in banner and "--plan tester" in banner
        health = httpx.get(f"{base}/api/v1/saas/health", timeout=30).json()
        assert health["status"] == "ok", health
        assert health["backends"]["database"]["implementation"] == "postgres"
        token = admin_token(base)  # first-admin setup, through the API the setup page uses
        assert "dev-worker-0" in banner
        # Graphs run on the dev worker (the web process only dispatches them).
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.post(
            f"{base}/api/v1/queue/default/enqueue_batch", json=add_graph_batch(), headers=headers, timeout=30
        )
        assert r.status_code == 200, r.text
        item_id = r.json()["item_ids"][0]
        deadline = time.monotonic() + 120
        while (item := httpx.get(f"{base}/api/v1/queue/default/i/{item_id}", headers=headers, timeout=30).json())[
            "status"
        ] not in ("completed", "failed", "canceled"):
            assert time.monotonic() < deadline, item
            time.sleep(0.2)
        assert item["status"] == "completed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_everything_stopped(data_dir, ports)

    # Second run on the same folder: the data is still there, and Ctrl-C stops it all the same.
    proc = _start_dev(data_dir, args)
    try:
        banner = _read_until(proc, "is running at", timeout=300)
        assert "sign in as:" in banner and "/api/v1/auth/setup" not in banner
        assert httpx.get(f"{base}/api/v1/auth/status", timeout=30).json()["setup_required"] is False
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_everything_stopped(data_dir, ports)


def test_busy_port_is_one_line(data_dir: Path) -> None:
    args, ports = _port_args()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["redis"]))
        blocker.listen()
        proc = _start_dev(data_dir, args)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output
    assert str(ports["redis"]) in lines[-1] and "already in use" in lines[-1]
    assert "--redis-port" in lines[-1]
    _assert_everything_stopped(data_dir, {k: v for k, v in ports.items() if k != "redis"})


def test_busy_web_port_is_reported_before_anything_starts(data_dir: Path) -> None:
    args, ports = _port_args()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["web"]))
        blocker.listen()
        proc = _start_dev(data_dir, args)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in output
    assert f"port {ports['web']}" in output.strip().splitlines()[-1]
    assert not (data_dir / "stack").exists()


def test_missing_prerequisite_is_one_line(data_dir: Path) -> None:
    args, _ = _port_args()
    # A PATH that holds only the virtual environment: no redis-server, no runuser.
    proc = _start_dev(data_dir, args, env={"PATH": str(Path(sys.executable).parent)})
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("invokeai-saas dev: ") and "not found" in last
