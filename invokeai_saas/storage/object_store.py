"""A thin S3 client for the storages and routes: bytes in, bytes out, and two errors that mean something.

boto3 reports a missing object, a dead endpoint, bad credentials and throttling as a zoo of exception
classes and error codes. Callers here need exactly two answers: "there is no such object" (a 404, or a
storage's own not-found exception) and "the object store cannot answer right now" (a 503, nothing lost).
Everything else is a bug and propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from invokeai_saas.aws import s3_client
from invokeai_saas.config import SaasSettings

# S3 answers for a key that is not there (get: NoSuchKey; head: a bare 404).
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# Bucket-level problems are an operator's misconfiguration, reported like an outage: nothing the user did.
_UNAVAILABLE_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
    }
)
DELETE_BATCH = 1000  # S3's DeleteObjects limit


class ObjectNotFound(Exception):
    """No object under that key."""


class ObjectStoreUnavailable(Exception):
    """The object store could not be reached or refused to serve (outage, throttling, credentials)."""


def _classify(error: Exception) -> Exception:
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _MISSING_CODES:
            return ObjectNotFound(code)
        if code in _UNAVAILABLE_CODES or status >= 500 or status in (401, 403):
            return ObjectStoreUnavailable(code or str(status))
        return error
    if isinstance(error, BotoCoreError):  # connection refused/reset, timeouts, no credentials
        return ObjectStoreUnavailable(type(error).__name__)
    return error


@contextmanager
def _classified() -> Iterator[None]:
    """Re-raise boto3's errors as the two that mean something here; any other error propagates unchanged."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        classified = _classify(error)
        if classified is error:
            raise
        raise classified from error


@dataclass(frozen=True)
class ObjectRange:
    data: bytes
    start: int
    end: int  # inclusive
    total: int


class S3ObjectStore:
    """One bucket, one boto3 client (thread-safe for these calls)."""

    def __init__(self, settings: SaasSettings, client: Any | None = None) -> None:
        if settings.s3_bucket is None:
            raise ValueError("s3_bucket is not configured")
        self.bucket = settings.s3_bucket
        self.client = client if client is not None else s3_client(settings)

    def _call(self, method: str, **kwargs: Any) -> Any:
        with _classified():
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call("put_object", Key=key, Body=data, ContentType=content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Large files (videos, archives) without reading them into memory; multipart above boto3's threshold."""
        try:
            with _classified():
                self.client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})
        except (ObjectNotFound, ObjectStoreUnavailable, ClientError, BotoCoreError):
            raise
        except Exception as error:  # boto3's S3UploadFailedError wraps the ClientError
            cause = error.__cause__ or error.__context__
            if isinstance(cause, (ClientError, BotoCoreError)):
                raise _classify(cause) from error
            raise

    def get_bytes(self, key: str) -> bytes:
        response = self._call("get_object", Key=key)
        try:
            return response["Body"].read()
        except BotoCoreError as error:
            raise ObjectStoreUnavailable(type(error).__name__) from error

    def get_range(self, key: str, start: int, end: int) -> ObjectRange:
        """Bytes ``start..end`` (inclusive) and the object's total size."""
        response = self._call("get_object", Key=key, Range=f"bytes={start}-{end}")
        content_range = str(response.get("ContentRange", ""))  # "bytes 0-99/1234"
        total = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else int(response["ContentLength"])
        try:
            data = response["Body"].read()
        except BotoCoreError as error:
            raise ObjectStoreUnavailable(type(error).__name__) from error
        return ObjectRange(data=data, start=start, end=start + len(data) - 1, total=total)

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        response = self._call("get_object", Key=key)
        try:
            yield from response["Body"].iter_chunks(chunk_size)
        except BotoCoreError as error:
            raise ObjectStoreUnavailable(type(error).__name__) from error

    def download_file(self, key: str, path: Path) -> None:
        with path.open("wb") as handle:
            for chunk in self.iter_chunks(key):
                handle.write(chunk)

    def size(self, key: str) -> int:
        """The object's size; ``ObjectNotFound`` when there is none."""
        return int(self._call("head_object", Key=key)["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def list_pages(self, prefix: str) -> Iterator[list[dict[str, Any]]]:
        """The objects under ``prefix``, a page (up to 1,000 entries) at a time, fetched as they are consumed."""
        paginator = self.client.get_paginator("list_objects_v2")
        with _classified():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                yield list(page.get("Contents", []))

    def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key succeeds (S3 semantics)."""
        self._call("delete_object", Key=key)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete in batches of 1,000; any per-key error fails the call (nothing is reported deleted that
        was not), so callers keep their journal entries until this returns."""
        pending = list(dict.fromkeys(keys))
        for start in range(0, len(pending), DELETE_BATCH):
            batch = pending[start : start + DELETE_BATCH]
            response = self._call("delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = [e for e in response.get("Errors", []) if e.get("Code") not in _MISSING_CODES]
            if errors:
                raise ObjectStoreUnavailable(str(errors[0].get("Code", "delete failed")))

    def presigned_get(
        self, key: str, expires_in: int, *, content_type: str | None = None, disposition: str | None = None
    ) -> str:
        """A short-lived GET URL; signing is local (no request), so it cannot tell whether S3 is up."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if content_type:
            params["ResponseContentType"] = content_type
        if disposition:
            params["ResponseContentDisposition"] = disposition
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))
