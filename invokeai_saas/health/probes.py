"""Backend probes and how they are run.

A probe is a real round trip to the backend (a query, a PING, a HEAD on the bucket), never an echo of
the configuration: a load balancer or an operator reading the health route wants to know whether the
process can serve requests *now*. Failures are reported by exception class only, because exception
messages carry hostnames, ports and sometimes credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

Backend = Literal["database", "object_store", "queue", "events", "billing"]
BACKENDS: tuple[Backend, ...] = ("database", "object_store", "queue", "events", "billing")


@dataclass(frozen=True)
class BackendProbe:
    """How to check one backend. ``check`` raises when the backend cannot be used and otherwise returns a
    short detail for operators (a server version, "bucket ok"); it must not return hostnames or secrets."""

    backend: Backend
    implementation: str
    check: Callable[[], str]


class BackendStatus(BaseModel):
    implementation: str = Field(description="Which implementation serves this backend, e.g. 'postgres', 'sqlite'.")
    reachable: bool = Field(description="Whether the live probe succeeded just now.")
    detail: str = Field(description="A short, secret-free description of the probe's result.")


async def run_probe(probe: BackendProbe, timeout: float) -> BackendStatus:
    """Run one probe in a worker thread (probes use blocking clients) and bound it by ``timeout``."""
    try:
        detail = await asyncio.wait_for(asyncio.to_thread(probe.check), timeout=timeout)
    except TimeoutError:
        return BackendStatus(implementation=probe.implementation, reachable=False, detail="probe timed out")
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"; only the class name is shown
        return BackendStatus(
            implementation=probe.implementation, reachable=False, detail=f"unreachable ({type(e).__name__})"
        )
    return BackendStatus(implementation=probe.implementation, reachable=True, detail=detail)


def select_probes(probes: Iterable[BackendProbe]) -> dict[Backend, BackendProbe]:
    """One probe per backend: the last one offered wins, matching the plugin call order (see hookspecs)."""
    selected: dict[Backend, BackendProbe] = {}
    for probe in probes:
        selected[probe.backend] = probe
    return selected


async def run_probes(probes: dict[Backend, BackendProbe], timeout: float) -> dict[Backend, BackendStatus]:
    results = await asyncio.gather(*(run_probe(probes[b], timeout) for b in BACKENDS))
    return dict(zip(BACKENDS, results, strict=True))
