"""An SQS endpoint served by moto.

moto keeps its state in memory only, so queues and messages are gone after a restart (users must create their
queues at start-up); the data dir is just the process's working directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from invokeai_saas.devstack.binaries import find_executable
from invokeai_saas.devstack.errors import PrerequisiteMissing
from invokeai_saas.devstack.process import ManagedServer

__all__ = ["SqsServer"]


class SqsServer(ManagedServer):
    """``moto_server`` bound to 127.0.0.1; it accepts any credentials, the fixed ones below are just conventional."""

    name = "sqs"
    label = "SQS (moto)"
    port_option = "--sqs-port"

    region = "us-east-1"
    access_key_id = "test"
    secret_access_key = "test"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        log_dir: Path | None = None,
        bin_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__(data_dir, port, log_dir=log_dir, bin_dirs=bin_dirs)
        self._binary: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def check_prerequisites(self) -> None:
        self._binary = find_executable(
            ("moto_server",), self.bin_dirs, self.label, "pip install 'moto[server]' in this virtualenv"
        )
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise PrerequisiteMissing("SQS (moto): the boto3 package is missing; pip install boto3") from None

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["PYTHONUNBUFFERED"] = "1"  # the log shows requests as they happen, not when a buffer fills
        return env

    def _command(self) -> list[str]:
        assert self._binary is not None
        return [str(self._binary), "-H", self.host, "-p", str(self.port)]

    def client(self) -> object:
        """A boto3 SQS client for this endpoint."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "sqs",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
        )

    def _probe(self) -> None:
        self.client().list_queues()  # type: ignore[attr-defined]
