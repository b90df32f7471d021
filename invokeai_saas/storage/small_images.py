"""Steps shared by the S3 storages of InvokeAI's small images: model covers, style preset images and workflow
thumbnails. Stock writes all three the same way (a 256 px WEBP thumbnail of the upload, overwritten in place), so
their S3 versions share the encoding, the write-then-index step, the decode and the local copy for callers that
need a path.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from invokeai.app.util.thumbnails import make_thumbnail
from PIL import Image
from PIL.Image import Image as PILImageType

from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import ObjectNotFound

WEBP = "image/webp"
THUMBNAIL_SIZE = 256


def thumbnail_webp(image: PILImageType) -> bytes:
    """Stock's file, byte for byte: ``make_thumbnail(image, 256).save(path, format="webp")`` with Pillow's
    defaults (the format, not the file name, decides the encoder, so a buffer gets the same bytes)."""
    buffer = io.BytesIO()
    make_thumbnail(image, THUMBNAIL_SIZE).save(buffer, format="webp")
    return buffer.getvalue()


def put_indexed(storage: ObjectStorage, key: str, user_id: str, kind: str, name: str, data: bytes) -> None:
    """Write the object, then its index row. The row is an upsert, so rewriting an image moves the owner's usage
    to the new size instead of counting the object twice."""
    storage.store.put_bytes(key, data, WEBP)
    storage.index.put(key, user_id, kind, name, len(data), WEBP)


def delete_indexed(storage: ObjectStorage, key: str) -> None:
    """Delete the object, then forget it; if S3 fails, the row stays and the image still counts as present."""
    storage.store.delete(key)
    storage.index.forget([key])


def open_image(data: bytes) -> PILImageType:
    """Decode now: stock hands out a lazily opened file, but a decode error should surface here, not later in
    whichever caller happens to touch the pixels first."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def materialise(storage: ObjectStorage, key: str, path: Path) -> Path:
    """A local copy of the object at ``path`` for the stock callers that need a file (the image routes answer
    with ``FileResponse(path)``).

    The copy is downloaded on every call: these objects are a few KB, and another API process may have rewritten
    or deleted the object since, so an old copy cannot be trusted. The download goes to a temporary file in the
    same folder and is renamed into place, so a reader never sees half a file. With no object the stale copy is
    removed and the path is returned anyway, as stock returns the path of a file that does not exist.
    ``ObjectStoreUnavailable`` propagates (the caller answers 503, not "no image").
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    try:
        storage.store.download_file(key, Path(temporary))
        os.replace(temporary, path)
    except ObjectNotFound:
        path.unlink(missing_ok=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return path
