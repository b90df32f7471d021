"""The five local servers the SaaS overlay needs, started and stopped as one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from invokeai_saas.devstack.group import start_together
from invokeai_saas.devstack.pg_server import PostgresServer
from invokeai_saas.devstack.process import ManagedServer
from invokeai_saas.devstack.redis_server import RedisServer
from invokeai_saas.devstack.s3_server import SeaweedS3Server
from invokeai_saas.devstack.sqs_server import SqsServer
from invokeai_saas.devstack.stripe_server import StripeServer

__all__ = ["LocalStack", "SERVER_NAMES", "S3_BUCKET"]

SERVER_NAMES = ("postgres", "redis", "s3", "sqs", "stripe")
S3_BUCKET = "invokeai"


class LocalStack:
    """PostgreSQL, Redis, S3, SQS and Stripe, each in ``data_dir/<name>``, logging to ``data_dir/logs/<name>.log``.

    ``ports`` maps server names to ports; a missing name or ``None`` picks a free port. ``durable=False`` trades
    crash safety for speed (test clusters).
    """

    def __init__(self, data_dir: Path, ports: Mapping[str, int | None] | None = None, durable: bool = True) -> None:
        ports = dict(ports or {})
        unknown = sorted(set(ports) - set(SERVER_NAMES))
        if unknown:
            raise ValueError(f"unknown server name(s) {unknown}; expected some of {list(SERVER_NAMES)}")
        self.data_dir = Path(data_dir).absolute()
        logs = self.data_dir / "logs"
        self.postgres = PostgresServer(self.data_dir / "postgres", ports.get("postgres"), durable=durable, log_dir=logs)
        self.redis = RedisServer(self.data_dir / "redis", ports.get("redis"), durable=durable, log_dir=logs)
        self.s3 = SeaweedS3Server(self.data_dir / "s3", ports.get("s3"), log_dir=logs)
        self.sqs = SqsServer(self.data_dir / "sqs", ports.get("sqs"), log_dir=logs)
        self.stripe = StripeServer(self.data_dir / "stripe", ports.get("stripe"), log_dir=logs)

    @property
    def servers(self) -> dict[str, ManagedServer]:
        """The servers by name, in start order."""
        return {
            "postgres": self.postgres,
            "redis": self.redis,
            "s3": self.s3,
            "sqs": self.sqs,
            "stripe": self.stripe,
        }

    @property
    def ports(self) -> dict[str, int]:
        return {name: server.port for name, server in self.servers.items()}

    def start(self, timeout: float = 60) -> None:
        """Start every server, or none.

        Prerequisites and ports are checked for all servers before anything runs, so a busy port costs nothing
        to report. Then all processes are launched before any is waited for, so their boot times overlap. If one
        fails, the ones already started are stopped and the error is re-raised.
        """
        launched = [server for server in self.servers.values() if not server.is_running()]
        start_together(launched, timeout)
        try:
            self.s3.ensure_bucket(S3_BUCKET)
        except BaseException:
            for server in reversed(launched):
                server.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        """Stop every server, in reverse start order; keep going if one of them fails to stop."""
        errors: list[BaseException] = []
        for server in reversed(list(self.servers.values())):
            try:
                server.stop(timeout)
            except Exception as exc:  # the others must still be stopped
                errors.append(exc)
        if errors:
            raise errors[0]

    def is_running(self) -> bool:
        return all(server.is_running() for server in self.servers.values())

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def saas_settings(self) -> dict[str, object]:
        """The connection settings for the SaaS config, pointing at these servers."""
        return {
            "database_url": self.postgres.url,
            "redis_url": self.redis.url,
            "s3_endpoint_url": self.s3.endpoint_url,
            "s3_region": self.s3.region,
            "s3_bucket": S3_BUCKET,
            "s3_access_key_id": self.s3.access_key_id,
            "s3_secret_access_key": self.s3.secret_access_key,
            "sqs_endpoint_url": self.sqs.endpoint_url,
            "sqs_region": self.sqs.region,
            "sqs_access_key_id": self.sqs.access_key_id,
            "sqs_secret_access_key": self.sqs.secret_access_key,
            "stripe_api_base": self.stripe.api_base,
            "stripe_api_key": self.stripe.api_key,
        }
