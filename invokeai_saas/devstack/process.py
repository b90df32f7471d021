"""The life cycle every local server shares: check, launch, probe, stop.

Subclasses only say *what* to run and how to ask it whether it is ready; this module owns *how* a child process
is run so that it never outlives us:

* ``start_new_session=True`` keeps a terminal's Ctrl-C away from the servers, so the CLI can stop them in order;
* ``PR_SET_PDEATHSIG`` makes the kernel signal a server when the Python process that started it dies, even by
  SIGKILL, where no ``finally`` block or ``atexit`` hook runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, NamedTuple

from invokeai_saas.devstack.errors import ServerFailed
from invokeai_saas.devstack.ports import LOOPBACK, ensure_port_free, free_port

__all__ = ["ManagedServer", "PortClaim"]

_PR_SET_PDEATHSIG = 1

try:
    # Loaded in the parent: the pre-exec hook runs between fork and exec, where loading a library is not safe.
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal, the CLI's own shutdown still applies
    _prctl = None


def _death_signal_hook(sig: signal.Signals) -> Callable[[], None]:
    """Build the pre-exec hook that ties the child's life to ours.

    It runs after Popen has switched user (``user=``), because changing credentials clears the parent-death
    setting; the getppid check closes the race where we died before prctl took effect.
    """
    parent = os.getpid()

    def hook() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


class PortClaim(NamedTuple):
    """A port a server will listen on, with the words a PortBusy message needs."""

    port: int
    what: str
    hint: str | None


class ManagedServer(ABC):
    """One local server process, logged to ``log_dir/<name>.log``.

    The parent-death signal is delivered when the *thread* that started the server ends, so start servers from a
    thread that lives as long as they should (the main thread, in the CLI and in pytest).
    """

    #: short name, used for the log file and as the key in LocalStack
    name: ClassVar[str]
    #: what a human calls it, the prefix of every error message
    label: ClassVar[str]
    #: the CLI option that changes its port, suggested when the port is busy
    port_option: ClassVar[str]
    #: how to ask the server to shut down cleanly
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        log_dir: Path | None = None,
        bin_dirs: Sequence[Path] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port if port is not None else free_port()
        self.log_dir = Path(log_dir).absolute() if log_dir is not None else self.data_dir / "logs"
        self.bin_dirs: tuple[Path, ...] | None = tuple(Path(d) for d in bin_dirs) if bin_dirs is not None else None
        self.host = LOOPBACK
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- what subclasses provide ------------------------------------------------------------------------------

    @abstractmethod
    def check_prerequisites(self) -> None:
        """Raise PrerequisiteMissing when something needed to run the server is not installed."""

    @abstractmethod
    def _command(self) -> list[str]:
        """The argv of the server process."""

    @abstractmethod
    def _probe(self) -> None:
        """Talk to the server with its real client; raise anything if it does not answer properly yet."""

    def _prepare(self, deadline: float) -> None:  # noqa: B027 - optional hook, empty by default
        """Create what the server needs on disk before it starts (config, secrets, initdb...)."""

    def _after_ready(self, deadline: float) -> None:  # noqa: B027 - optional hook, empty by default
        """Work that needs the running server (creating roles, buckets...)."""

    def _after_stop(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Clean up what the process may leave behind outside its data dir."""

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _cwd(self) -> Path:
        return self.data_dir

    def _popen_identity(self) -> dict[str, Any]:
        """Extra Popen arguments (``user``, ``group``...) for servers that must not run as root."""
        return {}

    def _death_signal(self) -> signal.Signals:
        return self.stop_signal

    def ports(self) -> list[PortClaim]:
        """Every port the server will listen on."""
        return [PortClaim(self.port, self.label, f"pass {self.port_option}")]

    # -- the life cycle ---------------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs (for diagnostics and tests)."""
        return self._proc.pid if self._proc is not None and self.is_running() else None

    def check_ports(self) -> None:
        for claim in self.ports():
            ensure_port_free(claim.port, claim.what, claim.hint)

    def is_running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.returncode is None and not self._has_exited(proc)

    def start(self, timeout: float = 60) -> None:
        """Start the server and return once its real client gets an answer; stop it again if that fails."""
        if self.is_running():
            return
        deadline = time.monotonic() + timeout
        try:
            self._launch(deadline)
            self._await_ready(deadline, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        """Ask the server to shut down cleanly, SIGKILL its whole process group if it does not. Idempotent."""
        proc = self._proc
        try:
            if proc is not None:
                if proc.returncode is None and not self._has_exited(proc):
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(self.stop_signal)
                    if not self._wait_exited(proc, timeout):
                        self._kill_group(proc)
                # The exited leader is not reaped yet, so its process-group id cannot have been reused: anything
                # still in the group is a straggler of ours (a server's helper, a PostgreSQL backend...).
                self._kill_group(proc)
                proc.wait()
        finally:
            self._proc = None
            if self._log is not None:
                self._log.close()
                self._log = None
            if proc is not None:
                self._after_stop()

    # -- internals (LocalStack calls the two phases separately so servers boot side by side) -------------------

    def _launch(self, deadline: float) -> None:
        self.check_prerequisites()
        self.check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._prepare(deadline)
        command = self._command()
        self._log = self.log_path.open("ab")
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        self._log.write(f"\n=== {stamp} starting: {' '.join(command)}\n".encode())
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self._cwd(),
                env=self._env(),
                start_new_session=True,
                preexec_fn=_death_signal_hook(self._death_signal()),
                **self._popen_identity(),
            )
        except OSError as exc:
            raise ServerFailed(self.label, f"could not run {command[0]} ({exc})", self.log_path) from exc

    def _await_ready(self, deadline: float, timeout: float) -> None:
        proc = self._proc
        assert proc is not None, "_launch() must run first"
        last_error: BaseException | None = None
        while True:
            if self._has_exited(proc):
                code = proc.wait()
                raise ServerFailed(
                    self.label, f"exited with code {code} while starting ({self._log_tail()})", self.log_path
                )
            try:
                self._probe()
            except Exception as exc:  # any client error means "not ready yet"
                last_error = exc
            else:
                break
            if time.monotonic() >= deadline:
                reason = f"{type(last_error).__name__}: {last_error}" if last_error else "no answer"
                raise ServerFailed(
                    self.label, f"did not answer within {timeout:g}s (last probe error: {reason[:200]})", self.log_path
                )
            time.sleep(0.1)
        self._after_ready(deadline)

    def _log_tail(self) -> str:
        """The last line of the log, quoted in error messages so the usual cause shows without opening the file."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 4096))
                lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()]
        except OSError:
            return "no log"
        lines = [line for line in lines if line]
        return f"last log line: {lines[-1][:200]}" if lines else "empty log"

    @staticmethod
    def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
        """Check for exit *without* reaping, so the pid and process group stay ours until stop() kills stragglers."""
        if proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _wait_exited(self, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._has_exited(proc):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
