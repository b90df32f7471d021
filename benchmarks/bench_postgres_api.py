"""Stock InvokeAI on SQLite vs. saas mode on PostgreSQL, through the real HTTP API, in one run.

Why this exists: moving InvokeAI's services onto PostgreSQL must not make the API slower or hungrier for the
users it already serves, and should let several API processes share one database. The only honest way to
see both is to seed the same data into both backends and drive the same requests at real ``invokeai-web``
processes, side by side on one machine, in one run, and compare ratios (absolute numbers depend on the machine).

Configurations:

* ``stock``  — unmodified ``invokeai-web`` (overlay hook disabled), its own SQLite file, ``multiuser: true``
  (saas mode forces multiuser on, so both sides take the same authentication path);
* ``saas-1`` — ``invokeai-web`` in saas mode on PostgreSQL, one API process;
* ``saas-2`` — two saas API processes on the same database; the load generator alternates between their
  ports request by request (a tiny round-robin balancer).

For each configuration, mix (``read``, ``write``) and concurrency (1, 16, 64 closed-loop clients, spread over
the seeded users, each logged in through ``POST /api/v1/auth/login``) one phase runs: a warm-up, then a fixed
measurement window. Per phase: requests/s, p50/p95/p99 latency, and server CPU-ms per request — the CPU time
of the API processes' trees plus, for saas, the PostgreSQL postmaster's tree (every backend), read from
``/proc`` right before and right after the window. The session processor is paused on every server first, so
enqueued graphs do not run and skew CPU; the queue is cleared after each write phase.

Usage: ``python benchmarks/bench_postgres_api.py`` (full size: 1,000 users, 200,000 images) or ``--quick`` (a
smoke run: 20 users, 5,000 images, short phases). ``--help`` lists the knobs. Everything binds to 127.0.0.1.
No timing is asserted anywhere: the script measures and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _bench_data import ADMIN_EMAIL, BENCH_PASSWORD, Dataset, Scale, build_dataset
from _bench_procstat import tree_cpu_seconds
from _bench_seed import (
    PostgresBulk,
    SeededIds,
    SqliteBulk,
    missing_postgres_services,
    postgres_services,
    seed,
    sqlite_services,
    write_stock_root,
)

from invokeai_saas.devstack import PostgresServer, make_temp_data_dir
from invokeai_saas.devstack.web import InvokeAIWebServer

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "_bench_loadgen.py"

CONFIGS = ("stock", "saas-1", "saas-2")
MIXES = ("read", "write")
# Same environment for every server: no network look-ups, quiet logs (no per-request access log lines).
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "INVOKEAI_LOG_LEVEL": "warning"}
# Per client: at most this many of its user's image names travel to the load generator.
IMAGES_PER_CLIENT = 200

FULL = Scale(users=1000, images=200_000, boards_per_user=5, workflows_per_user=5)
QUICK = Scale(users=20, images=5000, boards_per_user=5, workflows_per_user=3)


# ---------------------------------------------------------------------------------------------------------------
# results


@dataclass
class PhaseResult:
    config: str
    mix: str
    clients: int
    elapsed_s: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    api_cpu_s: float
    db_cpu_s: float
    client_cpu_s: float
    ops: dict[str, dict[str, float]] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def per_request_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.requests if self.requests else 0.0

    @property
    def server_cpu_ms(self) -> float:
        return self.per_request_ms(self.api_cpu_s + self.db_cpu_s)


# ---------------------------------------------------------------------------------------------------------------
# the load generator process


class LoadGenerator:
    """The ``_bench_loadgen.py`` child, driven with JSON lines (see its docstring for the protocol)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(LOADGEN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _expect(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited (code {self.proc.wait()}) while we waited for {event!r}")
        message = dict(json.loads(line))
        if message.get("event") != event:
            raise RuntimeError(f"load generator said {message!r}, expected {event!r}")
        return message

    def run_phase(self, spec: dict[str, Any], on_ready: Callable[[], None], on_done: Callable[[], None]) -> dict:
        """Warm up, call ``on_ready`` (clients idle), measure, call ``on_done`` (all answers in), return the result."""
        self._send({"cmd": "phase", **spec})
        self._expect("ready")
        on_ready()
        self._send({"cmd": "go"})
        self._expect("done")
        on_done()
        return self._expect("result")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"cmd": "quit"})
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------------------------
# talking to a server outside the measured windows


def login(url: str, email: str) -> str:
    response = httpx.post(f"{url}/api/v1/auth/login", json={"email": email, "password": BENCH_PASSWORD}, timeout=120)
    response.raise_for_status()
    return str(response.json()["token"])


def login_many(url: str, emails: Sequence[str]) -> dict[str, str]:
    """Log each distinct user in once. Logins cost a bcrypt check each, so they run before any phase, a few at
    a time (the server's thread pool does them in parallel)."""
    distinct = sorted(set(emails))
    with ThreadPoolExecutor(max_workers=4) as pool:
        tokens = list(pool.map(lambda email: login(url, email), distinct))
    return dict(zip(distinct, tokens, strict=True))


def admin_call(url: str, token: str, method: str, path: str) -> None:
    response = httpx.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"{method} {path} on {url}: HTTP {response.status_code} {response.text[:300]}")


# ---------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class Options:
    scale: Scale
    concurrency: list[int]
    mixes: list[str]
    configs: list[str]
    warmup_s: float
    duration_s: float
    durable: bool
    start_timeout: float
    keep: bool
    json_path: Path | None
    quick: bool


def client_users(data: Dataset, count: int) -> list[int]:
    """User index for each of ``count`` clients: spread evenly over all users (wrapping when there are fewer
    users than clients). Phases with fewer clients use the first ones."""
    users = data.scale.users
    if users >= count:
        return [i * users // count for i in range(count)]
    return [i % users for i in range(count)]


def client_specs(data: Dataset, seeded: SeededIds, tokens: dict[str, str], users: Sequence[int]) -> list[dict]:
    """What each client needs: its token, its user's board ids, and some of its user's image names (all of them
    for the DTO and star requests, those on a board for the board moves)."""
    specs = []
    for client, u in enumerate(users):
        rng = random.Random(client)
        owned = data.images_by_user[u]
        names = [data.images[i][0] for i in rng.sample(owned, min(IMAGES_PER_CLIENT, len(owned)))]
        on_boards = [data.images[i][0] for i in owned if data.images[i][4] >= 0]
        specs.append(
            {
                "token": tokens[data.emails[u]],
                "boards": seeded.board_ids[u],
                "images": names,
                "board_images": rng.sample(on_boards, min(IMAGES_PER_CLIENT, len(on_boards))),
            }
        )
    return specs


class CpuMeter:
    """Two readings of the API and database process trees' CPU time: one per window edge."""

    def __init__(self, api_pids: Sequence[int], db_pids: Sequence[int]) -> None:
        self.api_pids = list(api_pids)
        self.db_pids = list(db_pids)
        self.readings: list[tuple[float, float]] = []

    def mark(self) -> None:
        self.readings.append((tree_cpu_seconds(self.api_pids), tree_cpu_seconds(self.db_pids)))

    @property
    def api_seconds(self) -> float:
        return self.readings[-1][0] - self.readings[0][0]

    @property
    def db_seconds(self) -> float:
        return self.readings[-1][1] - self.readings[0][1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.work = make_temp_data_dir("bench-postgres-api-")
        self.data = build_dataset(options.scale)
        self.results: list[PhaseResult] = []
        self.seed_notes: list[str] = []
        self.pg: PostgresServer | None = None
        self.servers: list[InvokeAIWebServer] = []
        self.loadgen: LoadGenerator | None = None
        self.load_average = os.getloadavg()[0]  # printed with the results: a busy machine skews every number

    # -- seeding ------------------------------------------------------------------------------------------------

    def seed_postgres(self) -> SeededIds:
        from sqlalchemy import create_engine

        from invokeai_saas.db import migrate

        self.pg = PostgresServer(self.work / "pg", durable=self.o.durable)
        self.pg.start(timeout=120)
        engine = create_engine(self.pg.url, pool_size=2)
        try:
            migrate.upgrade(engine)
            seeded = seed(self.data, postgres_services(engine), PostgresBulk(engine))
        finally:
            engine.dispose()
        self._note("PostgreSQL", seeded, "COPY")
        return seeded

    def seed_sqlite(self) -> SeededIds:
        db = write_stock_root(self.work / "stock")
        try:
            seeded = seed(self.data, sqlite_services(db), SqliteBulk(db))
        finally:
            db._conn.close()
        self._note("SQLite", seeded, "executemany")
        return seeded

    def _note(self, backend: str, seeded: SeededIds, how: str) -> None:
        line = (
            f"{backend}: {seeded.service_rows:,} rows through the record services (admin + "
            f"{len(self.data.sample_users)} sample users' users/boards/images/board links/workflows), "
            f"{seeded.bulk_rows:,} rows bulk-inserted with {how}, in {seeded.seconds:.1f}s"
        )
        self.seed_notes.append(line)
        log(line)

    # -- servers ------------------------------------------------------------------------------------------------

    def _web(self, name: str, saas: bool) -> InvokeAIWebServer:
        env = dict(SERVER_ENV)
        if saas:
            assert self.pg is not None
            server = InvokeAIWebServer(
                self.work / name, saas_settings={"enabled": True, "database_url": self.pg.url}, env=env
            )
        else:
            env["INVOKEAI_SAAS_DISABLE_HOOK"] = "1"  # stock means stock: keep the overlay out of the process
            server = InvokeAIWebServer(self.work / name, env=env)
        self.servers.append(server)
        return server

    def _start(self, server: InvokeAIWebServer) -> None:
        started = time.monotonic()
        server.start(timeout=self.o.start_timeout)
        log(f"{server.root.name} up on {server.url} in {time.monotonic() - started:.0f}s (pid {server.pid})")

    def _stop(self, server: InvokeAIWebServer) -> None:
        server.stop(timeout=30)
        self.servers.remove(server)

    # -- phases -------------------------------------------------------------------------------------------------

    def run_config(
        self, config: str, urls: list[str], api_pids: list[int], seeded: SeededIds, tokens: dict[str, str]
    ) -> None:
        assert self.loadgen is not None
        admin = tokens[ADMIN_EMAIL]
        for url in urls:
            admin_call(url, admin, "PUT", "/api/v1/queue/default/processor/pause")
        users = client_users(self.data, max(self.o.concurrency))
        specs = client_specs(self.data, seeded, tokens, users)
        db_pids = [self.pg.pid] if config != "stock" and self.pg is not None and self.pg.pid else []
        for mix in self.o.mixes:
            for clients in self.o.concurrency:
                meter = CpuMeter(api_pids, db_pids)

                spec = {
                    "urls": urls,
                    "mix": mix,
                    "clients": specs[:clients],
                    "warmup_s": self.o.warmup_s,
                    "duration_s": self.o.duration_s,
                    "seed": clients,
                }
                raw = self.loadgen.run_phase(spec, meter.mark, meter.mark)
                overall = raw["all"]
                result = PhaseResult(
                    config=config,
                    mix=mix,
                    clients=clients,
                    elapsed_s=raw["elapsed_s"],
                    requests=int(overall["count"]),
                    errors=int(overall["errors"]),
                    p50_ms=overall["p50_ms"],
                    p95_ms=overall["p95_ms"],
                    p99_ms=overall["p99_ms"],
                    api_cpu_s=meter.api_seconds,
                    db_cpu_s=meter.db_seconds,
                    client_cpu_s=raw["client_cpu_s"],
                    ops=raw["ops"],
                    error_samples=raw["error_samples"],
                )
                self.results.append(result)
                log(
                    f"{config:7} {mix:5} c={clients:<3} {result.rps:8.1f} req/s  p95 {result.p95_ms:7.1f} ms  "
                    f"cpu {result.server_cpu_ms:6.2f} ms/req  errors {result.errors}"
                )
                for sample in result.error_samples:
                    log(f"    error sample: {sample}")
                if mix == "write":
                    admin_call(urls[0], admin, "PUT", "/api/v1/queue/default/clear")

    def run(self) -> None:
        saas_wanted = any(c != "stock" for c in self.o.configs)
        log(f"data set: {self.o.scale.describe()}; work dir {self.work}")
        seeded_pg = self.seed_postgres() if saas_wanted else None
        seeded_sqlite = self.seed_sqlite() if "stock" in self.o.configs else None
        self.loadgen = LoadGenerator()
        emails = [self.data.emails[u] for u in client_users(self.data, max(self.o.concurrency))] + [ADMIN_EMAIL]

        if seeded_sqlite is not None:
            stock = self._web("stock", saas=False)
            self._start(stock)
            assert stock.pid is not None
            tokens = login_many(stock.url, emails)
            self.run_config("stock", [stock.url], [stock.pid], seeded_sqlite, tokens)
            self._stop(stock)

        if seeded_pg is not None:
            first = self._web("saas-a", saas=True)
            self._start(first)
            assert first.pid is not None
            tokens = login_many(first.url, emails)
            if "saas-1" in self.o.configs:
                self.run_config("saas-1", [first.url], [first.pid], seeded_pg, tokens)
            if "saas-2" in self.o.configs:
                second = self._web("saas-b", saas=True)
                self._start(second)
                assert second.pid is not None
                # Both processes share the JWT secret through the database, so tokens from one work on the other.
                self.run_config("saas-2", [first.url, second.url], [first.pid, second.pid], seeded_pg, tokens)

    def close(self) -> None:
        if self.loadgen is not None:
            self.loadgen.close()
        for server in reversed(self.servers):
            server.stop(timeout=30)
        if self.pg is not None:
            self.pg.stop()
        if self.o.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# the report


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """A plain-text table: the first ``text_columns`` columns left-aligned, the numbers right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def report(bench: Bench) -> str:
    o = bench.o
    results = bench.results
    cores = os.cpu_count() or 1
    parts = [
        "",
        "=" * 100,
        "InvokeAI API: stock (SQLite) vs saas mode (PostgreSQL), measured side by side in one run",
        f"data: {o.scale.describe()}"
        f"{' (--quick)' if o.quick else ''}; phases: {o.warmup_s:g}s warm-up + {o.duration_s:g}s measured; "
        f"machine: {cores} CPU cores, load average {bench.load_average:.2f} at start; "
        f"PostgreSQL {'durable (fsync on)' if o.durable else 'non-durable (fsync off)'}",
        *[f"seeded — {note}" for note in bench.seed_notes],
        "read mix: list images by board 3 : image DTO 3 : list boards 2 : list workflows 1 : queue status 2",
        "write mix: upload 2 : enqueue 2 : star+unstar 1 : board remove+add 1 (actions; pairs are two requests)",
        "cpu ms/req = CPU of the API process trees + PostgreSQL's postmaster tree (saas), per request;"
        " cores = that CPU / wall time",
        "",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r.config,
                r.mix,
                str(r.clients),
                f"{r.rps:.1f}",
                f"{r.p50_ms:.1f}",
                f"{r.p95_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.server_cpu_ms:.2f}",
                f"{r.per_request_ms(r.db_cpu_s):.2f}" if r.config != "stock" else "-",
                f"{(r.api_cpu_s + r.db_cpu_s) / r.elapsed_s:.2f}" if r.elapsed_s else "-",
                f"{r.per_request_ms(r.client_cpu_s):.2f}",
                str(r.requests),
                str(r.errors),
            ]
        )
    headers = [
        "config", "mix", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "cpu ms/req", "of it pg",
        "cores", "client cpu ms/req", "requests", "errors",
    ]  # fmt: skip
    parts.append(_table(headers, rows, text_columns=2))

    by_key = {(r.config, r.mix, r.clients): r for r in results}
    ratio_rows = []
    for config in ("saas-1", "saas-2"):
        for mix in o.mixes:
            for clients in o.concurrency:
                saas, stock = by_key.get((config, mix, clients)), by_key.get(("stock", mix, clients))
                if saas is None or stock is None:
                    continue
                ratio_rows.append(
                    [
                        f"{config}/stock",
                        mix,
                        str(clients),
                        _ratio(saas.rps, stock.rps),
                        _ratio(saas.p50_ms, stock.p50_ms),
                        _ratio(saas.p95_ms, stock.p95_ms),
                        _ratio(saas.p99_ms, stock.p99_ms),
                        _ratio(saas.server_cpu_ms, stock.server_cpu_ms),
                    ]
                )
    if ratio_rows:
        parts += ["", "ratios (saas / stock; req/s above 1 is better, latency and CPU below 1 are better):", ""]
        parts.append(
            _table(["pair", "mix", "clients", "req/s", "p50", "p95", "p99", "cpu ms/req"], ratio_rows, text_columns=2)
        )

    one = min(o.concurrency)
    op_rows = []
    for config in o.configs:
        for mix in o.mixes:
            r = by_key.get((config, mix, one))
            if r is None:
                continue
            for op, s in r.ops.items():
                op_rows.append(
                    [
                        config,
                        mix,
                        op,
                        str(int(s["count"])),
                        f"{s['p50_ms']:.1f}",
                        f"{s['p95_ms']:.1f}",
                        f"{s['p99_ms']:.1f}",
                        str(int(s["errors"])),
                    ]
                )
    if op_rows:
        parts += ["", f"per route, {one} client{'s' if one != 1 else ''}:", ""]
        op_headers = ["config", "mix", "route", "requests", "p50 ms", "p95 ms", "p99 ms", "errors"]
        parts.append(_table(op_headers, op_rows, text_columns=3))

    image_list = [
        f"{config} {by_key[(config, 'read', one)].ops['list_images_by_board']['p95_ms']:.1f} ms"
        for config in o.configs
        if (config, "read", one) in by_key and "list_images_by_board" in by_key[(config, "read", one)].ops
    ]
    if image_list:
        parts += [
            "",
            f"image list by board (limit 50) p95, {one} client, {o.scale.images:,} images: " + ", ".join(image_list),
        ]
    errors = sum(r.errors for r in results)
    if errors:
        parts += ["", f"WARNING: {errors} requests failed; error samples were logged above (stderr)"]
    parts.append("=" * 100)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small data and short phases: a smoke run")
    parser.add_argument("--users", type=int, help=f"users to seed (full {FULL.users}, quick {QUICK.users})")
    parser.add_argument("--images", type=int, help=f"images to seed (full {FULL.images}, quick {QUICK.images})")
    parser.add_argument("--boards-per-user", type=int, help=f"boards per user (default {FULL.boards_per_user})")
    parser.add_argument("--workflows-per-user", type=int, help="workflows per user (full 5, quick 3)")
    parser.add_argument("--sample-users", type=int, help="users whose rows go through the services (default 3)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated client counts (default 1,16,64)")
    parser.add_argument("--mixes", default=",".join(MIXES), help="comma-separated: read,write")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: stock,saas-1,saas-2")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per phase (full 3, quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per phase (full 12, quick 3)")
    parser.add_argument("--pg-nondurable", action="store_true", help="run PostgreSQL with fsync off")
    parser.add_argument("--start-timeout", type=float, default=600, help="seconds each server may take to start")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (databases, server logs)")
    parser.add_argument("--json", type=Path, help="also write every phase's numbers to this JSON file")
    args = parser.parse_args(argv)

    base = QUICK if args.quick else FULL
    scale = Scale(
        users=args.users or base.users,
        images=args.images if args.images is not None else base.images,
        boards_per_user=args.boards_per_user if args.boards_per_user is not None else base.boards_per_user,
        workflows_per_user=args.workflows_per_user if args.workflows_per_user is not None else base.workflows_per_user,
        sample_users=args.sample_users if args.sample_users is not None else base.sample_users,
    )
    configs = [c for c in args.configs.split(",") if c]
    mixes = [m for m in args.mixes.split(",") if m]
    unknown = sorted(set(configs) - set(CONFIGS)) + sorted(set(mixes) - set(MIXES))
    if unknown:
        parser.error(f"unknown config or mix: {', '.join(unknown)}")
    concurrency = sorted({int(c) for c in args.concurrency.split(",") if c})
    if not concurrency or concurrency[0] < 1:
        parser.error("--concurrency needs positive client counts")
    return Options(
        scale=scale,
        concurrency=concurrency,
        mixes=mixes,
        configs=[c for c in CONFIGS if c in configs],
        warmup_s=args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0),
        duration_s=args.duration if args.duration is not None else (3.0 if args.quick else 12.0),
        durable=not args.pg_nondurable,
        start_timeout=args.start_timeout,
        keep=args.keep,
        json_path=args.json,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # Settings in our own environment must not leak into the servers: each config says exactly what it runs.
    for key in [k for k in os.environ if k.startswith("INVOKEAI_")]:
        del os.environ[key]
    if any(c != "stock" for c in options.configs):
        missing = missing_postgres_services()
        if missing:
            print(
                "the saas configs need the PostgreSQL services, and these are missing: "
                + ", ".join(missing)
                + "\n(run with --configs stock to measure stock alone)",
                file=sys.stderr,
            )
            return 2
    bench = Bench(options)
    try:
        bench.run()
    finally:
        bench.close()
        if bench.results:  # on failure too: what was measured before it is still worth reading
            print(report(bench), flush=True)
    if options.json_path is not None:
        payload = {"scale": asdict(options.scale), "results": [asdict(r) for r in bench.results]}
        options.json_path.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
