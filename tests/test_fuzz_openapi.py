"""A bounded schemathesis run over the whole OpenAPI of ``invokeai-web`` in saas mode, as a regular user and as an
administrator: no response may be a 5xx, or carry SQL, driver text, a traceback or a server path.

Each operation gets a few generated requests, valid and invalid ones (schemathesis's positive and negative modes),
sent over HTTP to a real server with a database of its own, so what the run creates, changes or deletes (it
deletes whatever it can, as the administrator) touches no other test. ``KNOWN_STOCK_5XX`` is the short list of stock
routes saas mode leaves alone that still answer 5xx on some bad input; the README repeats it. The run prints its
figures (requests, operations, statuses).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import InvalidArgument, Unsatisfiable
from schemathesis import GenerationMode

from invokeai_saas.db import migrate
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.browser import create_user
from tests.support.databases import create_database, drop_database
from tests.support.deployment import web_server
from tests.support.invokeai import admin_token

EXAMPLES_PER_MODE = 5

# Operations the run leaves out, because they end or change the caller's own session (each has its own tests).
SKIPPED = {
    ("POST", "/api/v1/auth/logout"): "revokes the token the run uses",
    ("PATCH", "/api/v1/auth/me"): "changes the password the run logs in with",
}

# Stock routes saas mode does not replace that answer 5xx (with a body that tells nothing): (method, path) -> why.
KNOWN_STOCK_5XX: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/images/"): "stock's unimplemented placeholder: 501 on every call",
    ("GET", "/api/v2/models/hugging_face"): "asks Hugging Face: 500 when the hub is unreachable (as here, offline)",
    ("GET", "/api/v2/models/install/huggingface"): "asks Hugging Face: 500 when the hub is unreachable",
}

# Text no response may carry: a Python traceback or source location, SQL statements.
LEAKS = re.compile(
    r"Traceback \(most recent call last\)|File \"/|"
    r"\bSELECT\b[^\"]{0,200}\bFROM\b|\bINSERT INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE FROM\b",
    re.IGNORECASE,
)
# Looked for in error answers only (a model record's path and the package list are data): server paths and the
# names of the database driver and ORM, which only an exception's text puts there.
ERROR_LEAKS = re.compile(
    r"(?<![\w.])/(?:home|root|tmp|usr|var|opt|work|srv)/[\w.-]+|site-packages|psycopg|sqlalchemy|asyncpg",
    re.IGNORECASE,
)


@dataclass
class Run:
    statuses: Counter[int] = field(default_factory=Counter)
    operations: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Fuzzed:
    web: InvokeAIWebServer
    headers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def fuzzed(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    name = f"fuzz_{uuid.uuid4().hex[:10]}"
    database_url = create_database(stack.postgres, name)
    migrate.upgrade_url(database_url)
    connection = stack.saas_settings()
    settings_ = {
        **connection,
        "enabled": True,
        "database_url": database_url,
        "s3_prefix": f"{name}/",
        "sqs_queue_prefix": name.replace("_", "-"),
    }
    web = web_server(tmp_path_factory.mktemp("fuzz-root"), settings_)
    web.start(timeout=300)
    try:
        admin = {"Authorization": f"Bearer {admin_token(web.url)}"}
        _, token = create_user(web.url, admin, f"fuzz-{uuid.uuid4().hex[:6]}@example.com")
        yield Fuzzed(web, {"admin": admin, "user": {"Authorization": f"Bearer {token}"}})
    finally:
        web.stop(timeout=30)
        drop_database(stack.postgres, name)


def _sent(case: Any) -> str:
    """Everything the request carried, so a response that echoes the request's own text is not called a leak."""
    return " ".join(str(part) for part in (case.path_parameters, case.query, case.body, case.headers) if part)


def _problem(case: Any, key: tuple[str, str], status: int, content_type: str, body: str) -> str | None:
    if "json" in content_type or "text" in content_type or status >= 400:
        sent = _sent(case)
        for pattern in (LEAKS, ERROR_LEAKS) if status >= 400 else (LEAKS,):
            for match in pattern.finditer(body):
                if match.group(0) not in sent:
                    return f"{status} carries {match.group(0)!r}: {body[:300]}"
    if status >= 500 and key not in KNOWN_STOCK_5XX:
        return f"{status}: {body[:300]}"
    return None


def _fuzz(operation: Any, mode: GenerationMode, fuzzed: Fuzzed, role: str, run: Run) -> None:
    """Send ``EXAMPLES_PER_MODE`` generated requests for one operation in one generation mode."""
    key = (operation.method.upper(), operation.path)

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a red run is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Any) -> None:
        headers = {**(case.headers or {}), **fuzzed.headers[role]}
        try:
            response = case.call(base_url=fuzzed.web.url, headers=headers, timeout=30)
        except Exception as error:  # a dropped connection is as bad as a 5xx
            run.failures.append(f"{role} {key[0]} {key[1]}: {type(error).__name__}")
            return
        run.statuses[response.status_code] += 1
        content_type = response.headers.get("content-type", [""])[0]
        body = response.content.decode("utf-8", "replace")
        problem = _problem(case, key, response.status_code, content_type, body)
        if problem:
            run.failures.append(f"{role} {key[0]} {key[1]} {mode.value}: {problem}")

    try:
        send()
    except (Unsatisfiable, InvalidArgument):  # schemathesis cannot build a request for this operation in this mode
        pass


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("role", ["user", "admin"])
def test_no_response_is_a_5xx_or_leaks_server_internals(fuzzed: Fuzzed, role: str) -> None:
    schema_json = httpx.get(f"{fuzzed.web.url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(schema_json)
    run = Run()
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        run.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, fuzzed, role, run)
    total = sum(run.statuses.values())
    print(
        f"\nfuzz as {role}: {run.operations} operations, {total} requests, "
        f"statuses {dict(sorted(run.statuses.items()))}, {len(run.failures)} problems"
    )
    assert run.operations > 100 and total > run.operations
    assert run.failures == [], "\n".join(run.failures[:60])
