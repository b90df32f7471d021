"""The local stack against the real servers: clients, loopback-only listeners, persistence, clean shutdown.

Starting the five servers costs a few seconds, so one stack is shared by the module; the tests that stop it come
after the ones that use it.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from invokeai_saas.devstack import (
    S3_BUCKET,
    DevStackError,
    LocalStack,
    PortBusy,
    PostgresServer,
    PrerequisiteMissing,
    RedisServer,
    SeaweedS3Server,
    ServerFailed,
    SqsServer,
    StripeServer,
    ensure_port_free,
    free_port,
    make_temp_data_dir,
)
from invokeai_saas.devstack.ports import port_is_free
from invokeai_saas.devstack.process import ManagedServer
from invokeai_saas.devstack.s3_server import remove_stale_grpc_sockets

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the local stack is Linux-only")

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_KEYS = {
    "database_url",
    "redis_url",
    "s3_endpoint_url",
    "s3_region",
    "s3_bucket",
    "s3_access_key_id",
    "s3_secret_access_key",
    "sqs_endpoint_url",
    "sqs_region",
    "sqs_access_key_id",
    "sqs_secret_access_key",
    "stripe_api_base",
    "stripe_api_key",
}


# -- process helpers ------------------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _descendants(pid: int) -> set[int]:
    result: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in result:
                result.add(child)
                todo.append(child)
    return result


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie holds no port and runs no code)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stack_pids(stack: LocalStack) -> set[int]:
    pids: set[int] = set()
    for server in stack.servers.values():
        assert server.pid is not None, f"{server.name} is not running"
        pids |= {server.pid} | _descendants(server.pid)
    return pids


def _stack_ports(stack: LocalStack) -> set[int]:
    return {claim.port for server in stack.servers.values() for claim in server.ports()}


def _wait_dead(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {pid for pid in pids if _alive(pid)}
        if not left:
            return set()
        time.sleep(0.1)
    return {pid for pid in pids if _alive(pid)}


def _wait_ports_free(ports: Iterable[int], timeout: float) -> list[int]:
    """The ports still not bindable after ``timeout`` (the kernel may need a moment to wind connections down)."""
    deadline = time.monotonic() + timeout
    busy = list(ports)
    while busy and time.monotonic() < deadline:
        busy = [port for port in busy if not port_is_free(port)]
        if busy:
            time.sleep(0.2)
    return busy


def _listeners() -> list[tuple[str, set[int]]]:
    """(local address, owning pids) of every listening TCP and UDP socket, from ``ss``."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    rows: list[tuple[str, set[int]]] = []
    for flags in ("-ltnpH", "-lunpH"):
        output = subprocess.run(["ss", flags], capture_output=True, text=True, check=True).stdout
        for line in output.splitlines():
            fields = line.split()
            if len(fields) < 5:
                continue
            pids = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
            rows.append((fields[3], pids))
    return rows


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack_dir() -> Iterator[Path]:
    # Not tmp_path: as root, PostgreSQL runs as the postgres user, who cannot enter /tmp/pytest-of-root (0700).
    path = make_temp_data_dir("invokeai-devstack-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(stack_dir: Path) -> Iterator[LocalStack]:
    local = LocalStack(stack_dir, durable=False)
    local.start()
    yield local
    local.stop()


# -- the running stack --------------------------------------------------------------------------------------------


def test_saas_settings_point_at_loopback(stack: LocalStack) -> None:
    settings = stack.saas_settings()
    assert set(settings) == SETTINGS_KEYS
    assert settings["s3_bucket"] == S3_BUCKET
    assert settings["s3_region"] == settings["sqs_region"] == "us-east-1"
    assert str(settings["stripe_api_key"]).startswith("sk_test_")
    for key in ("database_url", "redis_url", "s3_endpoint_url", "sqs_endpoint_url", "stripe_api_base"):
        assert "@127.0.0.1:" in str(settings[key]) or "//127.0.0.1:" in str(settings[key]), key


def test_every_listener_is_loopback_only(stack: LocalStack) -> None:
    ours = _stack_pids(stack)
    mine = [(address, pids) for address, pids in _listeners() if pids & ours]
    assert all(address.startswith("127.0.0.1:") for address, _ in mine), mine
    assert stack.s3.pid is not None
    weed = {stack.s3.pid} | _descendants(stack.s3.pid)
    weed_ports = {int(address.rsplit(":", 1)[1]) for address, pids in mine if pids & weed}
    # Only S3 and the ports claimed for master, volume, filer and admin with their gRPC ports; nothing else (no
    # WebDAV, Iceberg, Lance). A claimed component may not be listening at the instant of the listing (one CI run
    # found a claimed port absent), so the claimed set bounds what listens rather than equals it.
    claimed = {claim.port for claim in stack.s3.ports()}
    assert stack.s3.port in weed_ports and weed_ports <= claimed, (weed_ports, claimed)


def test_postgres_with_psycopg_and_sqlalchemy(stack: LocalStack) -> None:
    import psycopg
    import sqlalchemy

    with psycopg.connect(**stack.postgres.conninfo()) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO notes (body) VALUES (%s)", ("hello",))
        assert conn.execute("SELECT body FROM notes WHERE body = 'hello'").fetchone() == ("hello",)
    engine = sqlalchemy.create_engine(str(stack.saas_settings()["database_url"]))
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_user, current_database()")).one() == (
                "invokeai",
                "invokeai",
            )
    finally:
        engine.dispose()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**{**stack.postgres.conninfo(), "password": "wrong"}, connect_timeout=3)


def test_redis_set_get_and_password(stack: LocalStack) -> None:
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    client.close()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    anonymous = redis.Redis(host="127.0.0.1", port=stack.redis.port, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("greeting")
    anonymous.close()


def test_s3_objects_presigned_urls_and_signatures(stack: LocalStack) -> None:
    from botocore.exceptions import ClientError

    s3 = stack.s3.client()
    s3.put_object(Bucket=S3_BUCKET, Key="images/a.txt", Body=b"pixels")
    assert s3.get_object(Bucket=S3_BUCKET, Key="images/a.txt")["Body"].read() == b"pixels"

    url = s3.generate_presigned_url("get_object", Params={"Bucket": S3_BUCKET, "Key": "images/a.txt"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"pixels"

    with pytest.raises(ClientError) as refused:
        stack.s3.client(secret_access_key="not-the-secret").list_buckets()
    assert refused.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")

    forged = stack.s3.client(secret_access_key="not-the-secret").generate_presigned_url(
        "get_object", Params={"Bucket": S3_BUCKET, "Key": "images/a.txt"}, ExpiresIn=60
    )
    with pytest.raises(urllib.error.HTTPError) as http_refused:
        urllib.request.urlopen(forged, timeout=10)
    assert http_refused.value.code == 403

    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{stack.s3.endpoint_url}/{S3_BUCKET}/images/a.txt", timeout=10)
    assert anonymous.value.code == 403


def test_sqs_send_and_receive(stack: LocalStack) -> None:
    import boto3

    settings = stack.saas_settings()
    sqs = boto3.client(
        "sqs",
        endpoint_url=str(settings["sqs_endpoint_url"]),
        region_name=str(settings["sqs_region"]),
        aws_access_key_id=str(settings["sqs_access_key_id"]),
        aws_secret_access_key=str(settings["sqs_secret_access_key"]),
    )
    queue_url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job": 1}))
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"]) for m in messages] == [{"job": 1}]


def test_stripe_customer_roundtrip(stack: LocalStack) -> None:
    import stripe

    settings = stack.saas_settings()
    client = stripe.StripeClient(
        str(settings["stripe_api_key"]), base_addresses={"api": str(settings["stripe_api_base"])}
    )
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    assert client.v1.customers.retrieve(customer.id).email == "ada@example.com"


def test_stop_cleans_up_and_restart_keeps_data(stack: LocalStack, stack_dir: Path) -> None:
    """Stops the module's stack: keep this the last test that uses it."""
    import psycopg
    import redis
    import stripe

    marker = uuid.uuid4().hex
    with psycopg.connect(**stack.postgres.conninfo()) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS markers (value text)")
        conn.execute("INSERT INTO markers VALUES (%s)", (marker,))
    redis.Redis.from_url(stack.redis.url).set("marker", marker)
    stack.s3.client().put_object(Bucket=S3_BUCKET, Key="marker", Body=marker.encode())
    customer = stack.stripe.client().v1.customers.create(params={"description": marker})  # type: ignore[attr-defined]

    pids, ports = _stack_pids(stack), _stack_ports(stack)
    # Other session fixtures (a whole-suite run) may have servers of their own under this pytest process.
    stack_tree = set(pids).union(*(_descendants(pid) for pid in pids))
    unrelated = _descendants(os.getpid()) - stack_tree
    stack.stop()
    stack.stop()  # idempotent
    assert not stack.is_running()
    assert not {pid for pid in pids if _alive(pid)}
    leftovers = {pid for pid in _descendants(os.getpid()) if _alive(pid)} - unrelated
    assert not leftovers, "a child process outlived stop()"
    assert _wait_ports_free(ports, timeout=10) == []
    assert not [path for port in ports for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock")]

    again = LocalStack(stack_dir, ports=stack.ports, durable=False)
    again.start()
    try:
        assert again.saas_settings() == stack.saas_settings()
        with psycopg.connect(**again.postgres.conninfo()) as conn:
            assert conn.execute("SELECT value FROM markers").fetchall() == [(marker,)]
        assert redis.Redis.from_url(again.redis.url).get("marker") == marker.encode()
        assert again.s3.client().get_object(Bucket=S3_BUCKET, Key="marker")["Body"].read() == marker.encode()
        client = stripe.StripeClient(again.stripe.api_key, base_addresses={"api": again.stripe.api_base})
        assert client.v1.customers.retrieve(customer.id).description == marker
        assert (stack_dir / "stripe" / "localstripe.pickle").exists()  # not /tmp/localstripe.pickle
    finally:
        again.stop()
    assert _wait_ports_free(ports, timeout=10) == []


# -- failures -------------------------------------------------------------------------------------------------------

CHILD = """
import json, sys, time
from pathlib import Path
from invokeai_saas.devstack import LocalStack

stack = LocalStack(Path(sys.argv[1]), durable=False)
stack.start()
ports = sorted({claim.port for server in stack.servers.values() for claim in server.ports()})
print(json.dumps({"pids": [server.pid for server in stack.servers.values()], "ports": ports}), flush=True)
time.sleep(600)
"""


def test_servers_die_with_a_killed_parent() -> None:
    """SIGKILL leaves no finally block to run: the parent-death signal alone must take every server down."""
    data_dir = make_temp_data_dir("invokeai-devstack-orphan-")
    stderr_path = data_dir / "parent-stderr.txt"
    with stderr_path.open("w") as stderr:
        parent = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], 90)
        line = parent.stdout.readline() if ready else ""
        assert line, f"the child stack did not start: {stderr_path.read_text()[-2000:]}"
        info = json.loads(line)
        pids = set(info["pids"])
        for pid in info["pids"]:
            pids |= _descendants(pid)
        assert len(pids) > 5  # PostgreSQL's own helpers are in there too

        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_dead(pids, timeout=20) == set()
        assert _wait_ports_free(info["ports"], timeout=10) == []
        remove_stale_grpc_sockets(info["ports"])  # nobody was left to tidy /tmp up
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_port_busy_is_one_actionable_line(tmp_path: Path) -> None:
    with _listening_socket() as sock:
        port = sock.getsockname()[1]
        server = RedisServer(tmp_path / "redis", port)
        with pytest.raises(PortBusy) as busy:
            server.start()
        assert not server.is_running()
        with pytest.raises(PortBusy):
            ensure_port_free(port, "Thing")
    message = str(busy.value)
    assert message == (f"Redis: port {port} on 127.0.0.1 is already in use; stop what is using it or pass --redis-port")
    assert "\n" not in message and "Traceback" not in message
    assert isinstance(busy.value, DevStackError) and isinstance(busy.value, RuntimeError)


def test_stack_checks_every_port_before_starting_anything() -> None:
    before = _descendants(os.getpid())
    data_dir = make_temp_data_dir("invokeai-devstack-busy-")
    with _listening_socket() as sock:
        port = sock.getsockname()[1]
        local = LocalStack(data_dir, ports={"stripe": port}, durable=False)
        with pytest.raises(PortBusy, match=f"Stripe \\(localstripe\\): port {port} .*--stripe-port$"):
            local.start()
    assert not any(server.is_running() for server in local.servers.values())
    assert _descendants(os.getpid()) <= before
    assert not (data_dir / "postgres" / "pgdata").exists()
    shutil.rmtree(data_dir)
    with pytest.raises(ValueError, match="unknown server"):
        LocalStack(data_dir, ports={"mysql": 3306})


@pytest.mark.parametrize(
    ("server_class", "missing"),
    [
        (PostgresServer, "initdb"),
        (RedisServer, "redis-server or valkey-server"),
        (SeaweedS3Server, "weed"),
        (SqsServer, "moto_server"),
        (StripeServer, "python3 or python"),
    ],
)
def test_prerequisite_missing(tmp_path: Path, server_class: type[ManagedServer], missing: str) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    server = server_class(tmp_path / "data", bin_dirs=[empty])
    with pytest.raises(PrerequisiteMissing) as exc:
        server.start()
    message = str(exc.value)
    assert f": {missing} not found; " in message and "\n" not in message
    assert not server.is_running()
    if server_class is PostgresServer:
        assert message == (
            "PostgreSQL: initdb not found; install Debian's postgresql package (apt-get install postgresql)"
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to the postgres user")
def test_postgres_says_which_folder_blocks_the_postgres_user() -> None:
    base = make_temp_data_dir("invokeai-devstack-blocked-")
    try:
        blocked = base / "private"
        blocked.mkdir(mode=0o700)
        with pytest.raises(PrerequisiteMissing, match=f"cannot enter {blocked} .*chmod o\\+x {blocked}"):
            PostgresServer(blocked / "pg").start()
    finally:
        shutil.rmtree(base)


def test_server_failed_quotes_the_log(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot open the config file' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = RedisServer(tmp_path / "redis", bin_dirs=[bin_dir])
    with pytest.raises(ServerFailed) as failed:
        server.start(timeout=10)
    message = str(failed.value)
    assert message == (
        "Redis: exited with code 3 while starting (last log line: FATAL: cannot open the config file); "
        f"see {server.log_path}"
    )
    assert not server.is_running()
    server.stop()  # nothing to stop, still fine


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert port_is_free(port)
    ensure_port_free(port, "Nothing")
