"""CPU time of process trees, read from ``/proc/<pid>/stat`` (Linux).

A server's cost is the CPU time of its process *and everything it started*: PostgreSQL serves each connection
from its own backend process, and those backends retitle themselves (``postgres: invokeai invokeai
127.0.0.1(53712) idle``), so their command lines no longer name the data directory. They are all children of
the postmaster, though, so we sum the postmaster's tree instead.

For each process we count ``utime + stime`` (its own threads) plus ``cutime + cstime`` (children it has already
reaped). Summing that over a tree stays correct across a phase even when backends come and go: a child alive at
the first reading and reaped before the second moves from "own time of a live child" into its parent's
"reaped children" total, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cpu_seconds", "tree_cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:  # gone, or not ours to read
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    """pid -> parent pid, for every process we can see."""
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])  # field 4 of the man page: ppid
    return parents


def cpu_seconds(pid: int) -> float:
    """Own plus reaped-children CPU seconds of one process (0 when it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # Fields 14-17 of proc(5): utime, stime, cutime, cstime; here offset by the two fields cut off above.
    return sum(int(value) for value in fields[11:15]) / _TICKS


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds of the given processes and all their live descendants (see the module docstring)."""
    roots = [pid for pid in roots if pid]
    if not roots:
        return 0.0
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, ()))
    return sum(cpu_seconds(pid) for pid in seen)
