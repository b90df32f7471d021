"""Start and stop the real local servers the SaaS overlay needs: PostgreSQL, Redis, S3, SQS and Stripe.

Used by ``invokeai-saas dev`` (persistent data folder, fixed default ports) and by pytest session fixtures (temp
folders, free ports). Everything binds to 127.0.0.1 only, every child process dies with the Python process that
started it, and every error is one line a human can act on.
"""

from invokeai_saas.devstack.errors import DevStackError, PortBusy, PrerequisiteMissing, ServerFailed
from invokeai_saas.devstack.pg_server import PostgresServer
from invokeai_saas.devstack.ports import ensure_port_free, free_port
from invokeai_saas.devstack.process import ManagedServer
from invokeai_saas.devstack.redis_server import RedisServer
from invokeai_saas.devstack.s3_server import SeaweedS3Server
from invokeai_saas.devstack.sqs_server import SqsServer
from invokeai_saas.devstack.stack import S3_BUCKET, SERVER_NAMES, LocalStack
from invokeai_saas.devstack.stripe_server import StripeServer
from invokeai_saas.devstack.tempdirs import make_temp_data_dir

__all__ = [
    "DevStackError",
    "LocalStack",
    "ManagedServer",
    "PortBusy",
    "PostgresServer",
    "PrerequisiteMissing",
    "RedisServer",
    "S3_BUCKET",
    "SERVER_NAMES",
    "SeaweedS3Server",
    "ServerFailed",
    "SqsServer",
    "StripeServer",
    "ensure_port_free",
    "free_port",
    "make_temp_data_dir",
]
