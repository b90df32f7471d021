"""The load generator: a separate, cheap process that drives the HTTP API with N closed-loop clients.

It runs apart from the orchestrator (which imports InvokeAI and holds the seeding data) so that what it costs is
small and visible: one asyncio loop (uvloop when installed), aiohttp with keep-alive connections, no JSON parsing
of responses beyond what is needed. It talks to the orchestrator with JSON lines on stdin/stdout:

    -> {"cmd": "phase", ...spec...}
    <- {"event": "ready"}           warm-up done, every client idle: the orchestrator reads server CPU now
    -> {"cmd": "go"}
    <- {"event": "done"}            measurement over, every request finished: server CPU again
    <- {"event": "result", ...}     counts and latency percentiles per operation
    -> {"cmd": "quit"}

Clients start only after "go" and the phase ends only after the last in-flight request has its answer, so the
server CPU read around the window belongs to exactly the requests counted in it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import random
import struct
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

READ_MIX: list[tuple[str, int]] = [
    ("list_images_by_board", 3),
    ("image_dto", 3),
    ("list_boards", 2),
    ("list_workflows", 1),
    ("queue_status", 2),
]
# Actions, not requests: star_toggle is a star then an unstar, board_move a removal then an add, so the
# per-image state (starred, on a board) is where it started when the phase ends and later phases see the
# same data.
WRITE_MIX: list[tuple[str, int]] = [
    ("upload", 2),
    ("enqueue", 2),
    ("star_toggle", 1),
    ("board_move", 1),
]
# One route per phase, for the media benchmark (bench_s3_storage.py): each phase's latency and server CPU then
# belong to that route alone. "media-list" reuses the board listing; clients without boards list board "none"
# (the uncategorized images, which is where uploads land).
MEDIA_MIXES: dict[str, list[tuple[str, int]]] = {
    "media-upload": [("media_upload", 1)],
    "media-full": [("media_full", 1)],
    "media-thumbnail": [("media_thumbnail", 1)],
    "media-list": [("list_images_by_board", 1)],
}
# A media route in redirect serve mode answers with one of these and a presigned URL in Location.
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_ERROR_SAMPLES = 5


def _png(width: int = 8, height: int = 8) -> bytes:
    """A small RGB PNG, encoded by hand so this process does not import Pillow."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes((200, 30 + y * 10, 30)) * width for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = _png()


def _add_batch(a: int, b: int) -> dict[str, Any]:
    """One ``add`` node: a real graph that needs no model (the processor is paused, so it never runs anyway)."""
    return {
        "prepend": False,
        "batch": {
            "graph": {"id": "bench-add", "nodes": {"add": {"id": "add", "type": "add", "a": a, "b": b}}, "edges": []},
            "runs": 1,
        },
    }


@dataclass
class ClientSpec:
    token: str
    boards: list[str]
    images: list[str]
    board_images: list[str]


@dataclass
class Recorder:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def ok(self, op: str, seconds: float) -> None:
        self.latencies.setdefault(op, []).append(seconds)

    def fail(self, op: str, seconds: float, what: str) -> None:
        self.latencies.setdefault(op, []).append(seconds)
        self.errors[op] = self.errors.get(op, 0) + 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{op}: {what}"[:300])


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(values: list[float], errors: int) -> dict[str, float | int]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "errors": errors,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p95_ms": percentile(ordered, 0.95) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
    }


class Phase:
    """One phase: ``len(clients)`` clients, each looping over weighted random actions until the deadline."""

    def __init__(self, spec: dict[str, Any], session: aiohttp.ClientSession) -> None:
        self.urls: list[str] = spec["urls"]
        self.mix = MEDIA_MIXES.get(spec["mix"]) or (READ_MIX if spec["mix"] == "read" else WRITE_MIX)
        # Bodies for "media_upload", read once per phase: the orchestrator makes them (with Pillow), so this
        # process stays free of image libraries. Without any, uploads send the small hand-made PNG.
        self.upload_bodies = [Path(p).read_bytes() for p in spec.get("upload_files", [])] or [PNG]
        self.redirects = 0  # media answers that were redirects (redirect serve mode), in the last run
        self.clients = [ClientSpec(**c) for c in spec["clients"]]
        self.seed = int(spec.get("seed", 1))
        self.session = session
        self._next_url = itertools.count()

    def _url(self) -> str:
        """Round-robin over the servers, per request: the "tiny load balancer" of the multi-process config."""
        return self.urls[next(self._next_url) % len(self.urls)]

    async def _request(
        self, rec: Recorder, op: str, method: str, path: str, token: str, ok_statuses: tuple[int, ...], **kwargs: Any
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        try:
            async with self.session.request(method, self._url() + path, headers=headers, **kwargs) as response:
                body = await response.read()
                elapsed = time.perf_counter() - started
                if response.status in ok_statuses:
                    rec.ok(op, elapsed)
                else:
                    rec.fail(op, elapsed, f"HTTP {response.status} {body[:200]!r}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            rec.fail(op, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")

    async def _fetch_media(self, rec: Recorder, op: str, path: str, token: str) -> None:
        """GET a media route the way a browser does. In redirect serve mode the API answers with a redirect to a
        presigned URL, which is followed without the API's Authorization header (the signature is the
        credential, and S3 refuses a second one); the latency then covers both hops, as the user waits for both.
        The Location is used exactly as sent, since re-quoting would break the signature."""
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        try:
            async with self.session.get(self._url() + path, headers=headers, allow_redirects=False) as response:
                body = await response.read()
                status = response.status
                location = response.headers.get("Location") if status in REDIRECT_STATUSES else None
            if location is not None:
                self.redirects += 1
                async with self.session.get(URL(location, encoded=True)) as response:
                    body = await response.read()
                    status = response.status
            elapsed = time.perf_counter() - started
            if status == 200:
                rec.ok(op, elapsed)
            else:
                rec.fail(op, elapsed, f"HTTP {status} {body[:200]!r}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            rec.fail(op, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")

    def _media_actions(
        self, c: ClientSpec, rng: random.Random, rec: Recorder
    ) -> dict[str, Callable[[], Awaitable[None]]]:
        """The media benchmark's operations: upload a realistic PNG, fetch a full image or a thumbnail."""

        async def media_upload() -> None:
            form = aiohttp.FormData()
            form.add_field("file", rng.choice(self.upload_bodies), filename="bench.png", content_type="image/png")
            params = {"image_category": "user", "is_intermediate": "false"}
            await self._request(
                rec, "media_upload", "POST", "/api/v1/images/upload", c.token, (200, 201), params=params, data=form
            )

        async def media_full() -> None:
            await self._fetch_media(rec, "media_full", f"/api/v1/images/i/{rng.choice(c.images)}/full", c.token)

        async def media_thumbnail() -> None:
            path = f"/api/v1/images/i/{rng.choice(c.images)}/thumbnail"
            await self._fetch_media(rec, "media_thumbnail", path, c.token)

        return {"media_upload": media_upload, "media_full": media_full, "media_thumbnail": media_thumbnail}

    def _actions(self, c: ClientSpec, rng: random.Random, rec: Recorder) -> dict[str, Callable[[], Awaitable[None]]]:
        ok = (200,)
        created = (200, 201)

        async def list_images_by_board() -> None:
            board = rng.choice(c.boards) if c.boards else "none"
            params = {"board_id": board, "limit": "50"}
            await self._request(rec, "list_images_by_board", "GET", "/api/v1/images/", c.token, ok, params=params)

        async def image_dto() -> None:
            await self._request(rec, "image_dto", "GET", f"/api/v1/images/i/{rng.choice(c.images)}", c.token, ok)

        async def list_boards() -> None:
            await self._request(rec, "list_boards", "GET", "/api/v1/boards/", c.token, ok, params={"all": "true"})

        async def list_workflows() -> None:
            await self._request(
                rec, "list_workflows", "GET", "/api/v1/workflows/", c.token, ok, params={"page": "0", "per_page": "50"}
            )

        async def queue_status() -> None:
            await self._request(rec, "queue_status", "GET", "/api/v1/queue/default/status", c.token, ok)

        async def upload() -> None:
            form = aiohttp.FormData()
            form.add_field("file", PNG, filename="bench.png", content_type="image/png")
            params = {"image_category": "user", "is_intermediate": "false"}
            await self._request(
                rec, "upload", "POST", "/api/v1/images/upload", c.token, created, params=params, data=form
            )

        async def enqueue() -> None:
            body = _add_batch(rng.randrange(1000), rng.randrange(1000))
            await self._request(
                rec, "enqueue", "POST", "/api/v1/queue/default/enqueue_batch", c.token, created, json=body
            )

        async def star_toggle() -> None:
            names = {"image_names": [rng.choice(c.images)]}
            await self._request(rec, "star", "POST", "/api/v1/images/star", c.token, ok, json=names)
            await self._request(rec, "unstar", "POST", "/api/v1/images/unstar", c.token, ok, json=names)

        async def board_move() -> None:
            if not c.board_images or not c.boards:
                return await upload()
            name = rng.choice(c.board_images)
            path = "/api/v1/board_images/"
            await self._request(rec, "board_remove", "DELETE", path, c.token, created, json={"image_name": name})
            body = {"board_id": rng.choice(c.boards), "image_name": name}
            await self._request(rec, "board_add", "POST", path, c.token, created, json=body)

        return {
            "list_images_by_board": list_images_by_board,
            "image_dto": image_dto,
            "list_boards": list_boards,
            "list_workflows": list_workflows,
            "queue_status": queue_status,
            "upload": upload,
            "enqueue": enqueue,
            "star_toggle": star_toggle,
            "board_move": board_move,
            **self._media_actions(c, rng, rec),
        }

    async def _client(self, index: int, deadline: float, rec: Recorder, round_seed: int) -> None:
        spec = self.clients[index]
        rng = random.Random(self.seed * 1_000_003 + round_seed * 1009 + index)
        actions = self._actions(spec, rng, rec)
        names = [name for name, _ in self.mix]
        weights = [weight for _, weight in self.mix]
        while time.perf_counter() < deadline:
            await actions[rng.choices(names, weights)[0]]()

    async def run(self, seconds: float, round_seed: int) -> tuple[Recorder, float]:
        rec = Recorder()
        self.redirects = 0
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(self._client(i, deadline, rec, round_seed) for i in range(len(self.clients))))
        return rec, time.perf_counter() - started


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _read_command() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        return {"cmd": "quit"}
    return dict(json.loads(line))


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def main() -> None:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while True:
            command = await _read_command()
            if command["cmd"] == "quit":
                return
            if command["cmd"] != "phase":
                _emit({"event": "error", "message": f"unknown command {command['cmd']!r}"})
                continue
            phase = Phase(command, session)
            if command.get("warmup_s", 0) > 0:
                await phase.run(float(command["warmup_s"]), round_seed=0)
            _emit({"event": "ready"})
            go = await _read_command()
            if go["cmd"] != "go":
                return
            cpu_before = _own_cpu_seconds()
            rec, elapsed = await phase.run(float(command["duration_s"]), round_seed=1)
            client_cpu = _own_cpu_seconds() - cpu_before
            _emit({"event": "done"})
            everything = [value for values in rec.latencies.values() for value in values]
            _emit(
                {
                    "event": "result",
                    "elapsed_s": elapsed,
                    "client_cpu_s": client_cpu,
                    "all": summarize(everything, sum(rec.errors.values())),
                    "ops": {op: summarize(v, rec.errors.get(op, 0)) for op, v in sorted(rec.latencies.items())},
                    "error_samples": rec.error_samples,
                    "redirects": phase.redirects,
                }
            )


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
