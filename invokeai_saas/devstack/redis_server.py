"""A password-protected Redis (or Valkey) with append-only persistence in the data dir.

The configuration is written to a file readable by its owner only, rather than passed on the command line, so the
password never shows up in ``ps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from invokeai_saas.devstack.binaries import find_executable
from invokeai_saas.devstack.credentials import load_or_create, token, write_private
from invokeai_saas.devstack.errors import PrerequisiteMissing
from invokeai_saas.devstack.process import ManagedServer

__all__ = ["RedisServer"]


class RedisServer(ManagedServer):
    """Redis on 127.0.0.1 with ``requirepass``; ``durable=False`` leaves AOF syncing to the OS (tests)."""

    name = "redis"
    label = "Redis"
    port_option = "--redis-port"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        log_dir: Path | None = None,
        bin_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__(data_dir, port, log_dir=log_dir, bin_dirs=bin_dirs)
        self.durable = durable
        self.config_path = self.data_dir / "redis.conf"
        self._credentials_path = self.data_dir / "credentials.json"
        self._binary: Path | None = None
        self._secrets: dict[str, str] | None = None

    @property
    def password(self) -> str:
        """Generated on first use and kept in the data dir, like the data it protects."""
        if self._secrets is None:
            self._secrets = load_or_create(self._credentials_path, self.label, lambda: {"password": token()})
        return self._secrets["password"]

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/0"

    def check_prerequisites(self) -> None:
        self._binary = find_executable(
            ("redis-server", "valkey-server"),
            self.bin_dirs,
            self.label,
            "install Debian's redis-server package (apt-get install redis-server)",
        )
        try:
            import redis  # noqa: F401
        except ImportError:
            raise PrerequisiteMissing("Redis: the redis package is missing; pip install redis") from None

    def _prepare(self, deadline: float) -> None:
        lines = {
            "bind": self.host,
            "port": str(self.port),
            "protected-mode": "yes",
            "daemonize": "no",
            "supervised": "no",
            "dir": str(self.data_dir),
            "logfile": '""',  # stdout, which is our log file
            "unixsocket": '""',
            "appendonly": "yes",
            "appendfsync": "everysec" if self.durable else "no",
            "requirepass": self.password,
        }
        text = "".join(f"{key} {value}\n" for key, value in lines.items())
        write_private(self.config_path, "# written by invokeai_saas.devstack on every start\n" + text)

    def _command(self) -> list[str]:
        assert self._binary is not None
        return [str(self._binary), str(self.config_path)]

    def _probe(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),  # the start loop retries; the client's own backoff would only slow it
        )
        try:
            if not client.ping():
                raise ConnectionError("PING did not return PONG")
        finally:
            client.close()
