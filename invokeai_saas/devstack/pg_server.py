"""A PostgreSQL cluster in the data dir, run in the foreground as our child.

It is started with ``postgres`` directly rather than ``pg_ctl``, so the postmaster is our own child: it gets the
parent-death signal and we can wait for it. Everything that differs from a stock cluster is passed with ``-c`` on
the command line rather than written into postgresql.conf, so the files on disk stay a plain cluster.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from invokeai_saas.devstack.binaries import postgres_bin_dir
from invokeai_saas.devstack.credentials import load_or_create, token, write_private
from invokeai_saas.devstack.errors import PrerequisiteMissing, ServerFailed
from invokeai_saas.devstack.process import ManagedServer

__all__ = ["PostgresServer"]

_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL


class PostgresServer(ManagedServer):
    """PostgreSQL with an ``invokeai`` role owning an ``invokeai`` database.

    ``durable=False`` turns off fsync and friends: much faster, fine for throw-away test clusters, and a crash
    can corrupt the data, so the ``dev`` command keeps the default.
    """

    name = "postgres"
    label = "PostgreSQL"
    port_option = "--postgres-port"
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to disconnect, maybe forever;
    # SIGINT is "fast" shutdown: roll back open transactions, checkpoint, exit.
    stop_signal = signal.SIGINT

    superuser = "postgres"
    user = "invokeai"
    database = "invokeai"

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
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "run"
        self._credentials_path = self.data_dir / "credentials.json"
        self._bin_dir: Path | None = None
        self._secrets: dict[str, str] | None = None

    # -- connection details -----------------------------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, str]:
        """Passwords for the superuser and the app role, created on first use and kept in the data dir."""
        if self._secrets is None:
            self._secrets = load_or_create(
                self._credentials_path, self.label, lambda: {"superuser_password": token(), "password": token()}
            )
        return self._secrets

    @property
    def password(self) -> str:
        return self.credentials["password"]

    @property
    def admin_password(self) -> str:
        return self.credentials["superuser_password"]

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the app database, as the app role."""
        return self._url(self.user, self.password, self.database)

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database, as the superuser (for migrations tooling and tests)."""
        return self._url(self.superuser, self.admin_password, "postgres")

    def _url(self, user: str, password: str, database: str) -> str:
        return f"postgresql+psycopg://{quote(user)}:{quote(password, safe='')}@{self.host}:{self.port}/{database}"

    def conninfo(self, admin: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (which does not understand the ``+psycopg`` URL)."""
        if admin:
            return dict(
                host=self.host, port=self.port, user=self.superuser, password=self.admin_password, dbname="postgres"
            )
        return dict(host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.database)

    # -- prerequisites ----------------------------------------------------------------------------------------

    def _cluster_version(self) -> str | None:
        version_file = self.pgdata / "PG_VERSION"
        return version_file.read_text().strip() if version_file.exists() else None

    def _os_user(self) -> pwd.struct_passwd | None:
        """PostgreSQL refuses to run as root; as root we run it as the ``postgres`` user Debian's package creates."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.superuser)
        except KeyError:
            raise PrerequisiteMissing(
                "PostgreSQL: running as root needs the postgres OS user; "
                "install Debian's postgresql package (apt-get install postgresql)"
            ) from None

    def check_prerequisites(self) -> None:
        self._bin_dir = postgres_bin_dir(self.bin_dirs, self._cluster_version())
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PrerequisiteMissing(
                "PostgreSQL: the psycopg package is missing; pip install 'psycopg[binary]'"
            ) from None
        account = self._os_user()
        if account is not None:
            self._check_reachable(account)

    def _check_reachable(self, account: pwd.struct_passwd) -> None:
        """Fail early, and say which folder to open up, when the postgres user cannot walk to the data dir."""
        groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
        for folder in reversed(self.data_dir.parents):
            if not folder.exists():
                break  # created later by us, with the usual umask
            info = folder.stat()
            if info.st_uid == account.pw_uid:
                allowed = info.st_mode & stat.S_IXUSR
            elif info.st_gid in groups:
                allowed = info.st_mode & stat.S_IXGRP
            else:
                allowed = info.st_mode & stat.S_IXOTH
            if not allowed:
                raise PrerequisiteMissing(
                    f"PostgreSQL: the postgres OS user cannot enter {folder} (mode {stat.S_IMODE(info.st_mode):o}), "
                    f"a parent of {self.data_dir}; run 'chmod o+x {folder}' or choose a data dir elsewhere"
                )

    # -- start ------------------------------------------------------------------------------------------------

    def _popen_identity(self) -> dict[str, Any]:
        account = self._os_user()
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"  # messages in the log stay readable whatever locale the shell has (or lacks)
        return env

    def _give_to_postgres(self, path: Path) -> None:
        account = self._os_user()
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)

    def _prepare(self, deadline: float) -> None:
        self.credentials  # noqa: B018 - create the passwords before initdb needs one
        if self._os_user() is not None:
            mode = stat.S_IMODE(self.data_dir.stat().st_mode)
            self.data_dir.chmod(mode | stat.S_IXOTH)
        for folder in (self.pgdata, self.socket_dir):
            folder.mkdir(mode=0o700, exist_ok=True)
            self._give_to_postgres(folder)
        if self._cluster_version() is None:
            self._initdb(deadline)

    def _initdb(self, deadline: float) -> None:
        """Create the cluster, only when the data dir has none: data must survive restarts."""
        if any(self.pgdata.iterdir()):
            raise ServerFailed(
                self.label, f"{self.pgdata} holds files but no cluster (no PG_VERSION); move it aside and retry"
            )
        assert self._bin_dir is not None
        pwfile = self.data_dir / ".initdb-password"
        write_private(pwfile, self.admin_password + "\n")
        self._give_to_postgres(pwfile)
        command = [
            str(self._bin_dir / "initdb"),
            f"--pgdata={self.pgdata}",
            f"--username={self.superuser}",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not self.durable:
            command.append("--no-sync")
        try:
            with self.log_path.open("ab") as log:
                log.write(f"\n=== initdb: {' '.join(command)}\n".encode())
                log.flush()
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=self._env(),
                    timeout=max(1.0, deadline - time.monotonic()),
                    check=False,
                    **self._popen_identity(),
                )
        except subprocess.TimeoutExpired:
            raise ServerFailed(self.label, "initdb did not finish in time", self.log_path) from None
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServerFailed(
                self.label, f"initdb failed with code {result.returncode} ({self._log_tail()})", self.log_path
            )

    def _command(self) -> list[str]:
        assert self._bin_dir is not None
        socket_file = self.socket_dir / f".s.PGSQL.{self.port}"
        # Over-long socket paths make the postmaster refuse to start; everything we do goes over TCP anyway.
        sockets = str(self.socket_dir) if len(str(socket_file)) <= _SOCKET_PATH_MAX else ""
        settings = {
            "listen_addresses": self.host,
            "unix_socket_directories": sockets,
            "logging_collector": "off",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        command = [str(self._bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def _probe(self) -> None:
        import psycopg

        with psycopg.connect(**self.conninfo(admin=True), connect_timeout=2) as conn:
            conn.execute("SELECT 1").fetchone()

    def _after_ready(self, deadline: float) -> None:
        """Create (or re-sync the password of) the app role and its database; safe to run on every start."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(**self.conninfo(admin=True), connect_timeout=5, autocommit=True) as conn:
            role = sql.Identifier(self.user)
            password = sql.Literal(self.password)
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)).fetchone():
                conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(role, password))
            else:
                conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(role, password))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.database), role))
