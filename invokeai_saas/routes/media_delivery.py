"""How a media route hands an object to the browser once stock's access check has passed.

The S3 media routes (``media_*.py``) keep stock's contract — path, operation id, auth dependency,
access check, status codes, headers — and differ only in where the bytes come from. They find the
object through the object index (``kind`` + the media's own name → key), never by building a key
from the request, so a guessed name can only ever reach the object that name belongs to, and only
after stock's check allowed the caller to read that media.

Two delivery modes (``s3_serve_mode``):

- ``stream`` (default): the API reads the object and streams it. The first chunk is fetched before
  the response starts, so a missing object is still a 404 and an outage still a 503 (once headers
  are sent, a failure can only cut the body short).
- ``redirect``: a 307 to a short-lived presigned GET URL (or to ``s3_cdn_base_url`` + key). The URL
  is signed for ``s3_public_endpoint_url`` when set, because SigV4 signs the host the browser will
  contact. The presigned response carries stock's content type, disposition and cache policy; the
  redirect itself is ``no-store`` (it expires). HEAD never redirects: a URL presigned for GET is not
  valid for HEAD, and the index already knows the size. Presigning is local, so in this mode an outage
  shows at S3 (the browser's request fails) rather than as a 503 here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from invokeai_saas.aws import s3_client
from invokeai_saas.storage.context import ObjectStorage, get_object_storage
from invokeai_saas.storage.object_cache import SmallObjectCache
from invokeai_saas.storage.object_index import IndexedObject
from invokeai_saas.storage.object_store import ObjectNotFound

STREAM_CHUNK_SIZE = 1024 * 1024  # as stock's RANGE_CHUNK_SIZE


def object_storage() -> ObjectStorage:
    return get_object_storage()


def find_object(kind: str, name: str) -> IndexedObject:
    """The indexed object for this media, or stock's bare 404 (no row: never stored, or already deleted)."""
    found = object_storage().index.find(kind, name)
    if found is None:
        raise HTTPException(status_code=404)
    return found


def file_response_disposition(disposition_type: str, filename: str) -> str:
    """``Content-Disposition`` exactly as Starlette's ``FileResponse`` writes it (the stock routes that
    answered with a ``FileResponse`` keep the same header)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"{disposition_type}; filename*=utf-8''{quoted}"
    return f'{disposition_type}; filename="{filename}"'


class BrowserUrls:
    """Builds the URL a redirect sends the browser to: CDN base + key, or a URL presigned for the endpoint the
    browser reaches (a second client when ``s3_public_endpoint_url`` differs from the API's own endpoint)."""

    def __init__(self, storage: ObjectStorage) -> None:
        settings = storage.settings
        self._cdn_base = settings.s3_cdn_base_url.rstrip("/") if settings.s3_cdn_base_url else None
        self._bucket = storage.store.bucket
        public = settings.s3_public_endpoint_url
        if public and public != settings.s3_endpoint_url:
            self._client: Any = s3_client(settings.model_copy(update={"s3_endpoint_url": public}))
        else:
            self._client = storage.store.client

    def url_for(self, key: str, expires_in: int, headers: Mapping[str, str], media_type: str) -> str:
        if self._cdn_base is not None:
            return f"{self._cdn_base}/{quote(key, safe='/')}"
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "ResponseContentType": media_type}
        if "Content-Disposition" in headers:
            params["ResponseContentDisposition"] = headers["Content-Disposition"]
        if "Cache-Control" in headers:
            params["ResponseCacheControl"] = headers["Cache-Control"]
        return str(self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))


_urls_lock = threading.Lock()
_urls: tuple[ObjectStorage, BrowserUrls] | None = None


def browser_urls(storage: ObjectStorage) -> BrowserUrls:
    """One ``BrowserUrls`` per object storage (building a boto3 client costs milliseconds; presigning is local)."""
    global _urls
    with _urls_lock:
        if _urls is None or _urls[0] is not storage:
            _urls = (storage, BrowserUrls(storage))
        return _urls[1]


def redirect_enabled() -> bool:
    return object_storage().settings.s3_serve_mode == "redirect"


def open_stream(key: str) -> Iterator[bytes]:
    """The object's chunks, with the first one already fetched: not-found and outages surface here, before
    any response header is sent (``ObjectNotFound`` → 404; ``ObjectStoreUnavailable`` propagates → 503)."""
    chunks = object_storage().store.iter_chunks(key, STREAM_CHUNK_SIZE)
    try:
        first = next(chunks, b"")
    except ObjectNotFound:
        raise HTTPException(status_code=404) from None

    def stream() -> Iterator[bytes]:
        if first:
            yield first
        yield from chunks

    return stream()


def stream_object(obj: IndexedObject, media_type: str, headers: Mapping[str, str]) -> StreamingResponse:
    return StreamingResponse(
        open_stream(obj.object_key),
        media_type=media_type,
        headers={**headers, "Content-Length": str(obj.bytes)},
    )


def redirect_to_object(obj: IndexedObject, media_type: str, headers: Mapping[str, str]) -> RedirectResponse:
    storage = object_storage()
    url = browser_urls(storage).url_for(obj.object_key, storage.settings.s3_presign_expires, headers, media_type)
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})


_small_objects = SmallObjectCache()


def cached_object(obj: IndexedObject, media_type: str, headers: Mapping[str, str]) -> Response | None:
    """A small immutable object (a thumbnail, a small image) from this process's cache, fetched into it on a
    miss; ``None`` for objects the cache does not take. Callers have already found the object in the index
    and run stock's access check, so the cache never answers for deleted or forbidden media."""
    if not _small_objects.accepts(obj.kind, obj.bytes):
        return None
    data = _small_objects.get(obj.object_key)
    if data is None:
        try:
            data = object_storage().store.get_bytes(obj.object_key)
        except ObjectNotFound:
            raise HTTPException(status_code=404) from None
        _small_objects.put(obj.object_key, data)
    return Response(content=data, media_type=media_type, headers=dict(headers))


def deliver(obj: IndexedObject, media_type: str, headers: Mapping[str, str]) -> Response:
    """Stream (small immutable objects from the cache) or redirect, as configured."""
    if redirect_enabled():
        return redirect_to_object(obj, media_type, headers)
    cached = cached_object(obj, media_type, headers)
    return cached if cached is not None else stream_object(obj, media_type, headers)


def head_object(obj: IndexedObject, media_type: str, headers: Mapping[str, str]) -> Response:
    """A HEAD answer from the index alone (size and type), with stock's headers."""
    return Response(status_code=200, media_type=media_type, headers={**headers, "Content-Length": str(obj.bytes)})
