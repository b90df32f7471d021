"""boto3 clients for S3 and SQS built from the saas settings (endpoint, region, credentials).

Timeouts and retries are set explicitly: boto3's defaults (60 s reads, legacy retries) would let a
dead endpoint hang a request far longer than any user or health check waits.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from invokeai_saas.config import SaasSettings


def _client(service: str, endpoint: str | None, region: str, key_id: str | None, secret: str | None) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if service == "s3" else None,
            signature_version="s3v4" if service == "s3" else None,
        ),
    )


def s3_client(settings: SaasSettings) -> Any:
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    return _client("s3", settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id, secret)


def sqs_client(settings: SaasSettings) -> Any:
    secret = settings.sqs_secret_access_key.get_secret_value() if settings.sqs_secret_access_key else None
    return _client("sqs", settings.sqs_endpoint_url, settings.sqs_region, settings.sqs_access_key_id, secret)
