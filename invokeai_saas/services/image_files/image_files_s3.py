"""InvokeAI's image file storage on S3: stock's ``ImageFileStorageBase`` over the object store and its index.

Why it looks the way it does:

- **Same bytes as stock.** ``save()`` repeats ``DiskImageFileStorage.save`` step for step (thumbnail before
  ``image.info`` is replaced, the same PNG text chunks in the same order, the same compression choice through
  stock's own ``_should_use_png_rle``, WEBP thumbnails with Pillow's defaults), so an image downloaded from a
  hosted instance is the file a local install would have written, metadata and all.
- **Keys need the owner; the interface does not carry it.** Saving asks the image records for the owner (stock's
  ``ImageService.create`` writes the record before the file); every later look-up goes through the object index,
  which also keeps each user's exact stored bytes. Keys ignore ``image_subfolder``: S3 has no directories.
- **Deletes are journalled in PostgreSQL, not moved aside.** ``stage_delete``/``begin_delete`` only resolve the keys
  and write the journal (so they work while S3 is down); ``commit_delete`` deletes the objects and then forgets
  them. If S3 is down at commit the journal stays and the cleanup pass finishes the job once the record is gone.
- **Some stock callers need a local file** (bulk download zips, recall parameters, custom nodes calling
  ``context.images.get_path``). ``get_path`` materialises the object into a bounded local cache laid out like
  stock's outputs folder and returns that path, or the would-be path when there is no object (stock never checks
  existence there either; callers test the path themselves).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from invokeai.app.services.image_files.image_files_base import ImageFileStorageBase
from invokeai.app.services.image_files.image_files_common import (
    ImageFileDeleteException,
    ImageFileNotFoundException,
    ImageFileSaveException,
)
from invokeai.app.services.image_files.image_files_disk import DiskImageFileStorage, _should_use_png_rle
from invokeai.app.services.image_records.image_records_common import ImageRecordNotFoundException
from invokeai.app.util.thumbnails import get_thumbnail_name, make_thumbnail
from PIL import Image, PngImagePlugin
from PIL.Image import Image as PILImageType

from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.object_store import ObjectNotFound

if TYPE_CHECKING:
    from invokeai.app.services.invocation_services import InvocationServices
    from invokeai.app.services.invoker import Invoker

logger = logging.getLogger(__name__)

PNG_CONTENT_TYPE = "image/png"
WEBP_CONTENT_TYPE = "image/webp"
DEFAULT_LOCAL_CACHE_BYTES = 512 * 1024 * 1024
_DECODED_CACHE_SIZE = 10  # stock's in-memory cache size
_REMEMBERED_THUMBNAILS = 4096
_PARTIAL_PREFIX = ".partial-"
_STALE_PARTIAL_SECONDS = 3600


@dataclass(frozen=True)
class _StagedDelete:
    """One image's keys, journalled by ``stage_delete()``; nothing has been deleted yet."""

    image_name: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class _PendingDelete:
    """The keys of many images, journalled by ``begin_delete()`` before their records are deleted."""

    keys_by_name: dict[str, tuple[str, ...]] = field(default_factory=dict)


class _DecodedImages:
    """Decoded images by name, least recently used first out; shared by the session-processor threads.

    Names are never reused and a saved image never changes, so a cached image can only be stale by having been
    deleted, and deletes evict it here.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, PILImageType] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image_name: str) -> PILImageType | None:
        with self._lock:
            image = self._items.get(image_name)
            if image is not None:
                self._items.move_to_end(image_name)
            return image

    def put(self, image_name: str, image: PILImageType) -> None:
        with self._lock:
            self._items[image_name] = image
            self._items.move_to_end(image_name)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def evict(self, image_name: str) -> None:
        with self._lock:
            self._items.pop(image_name, None)


class _LocalFiles:
    """Local copies of objects for callers that need a path, bounded in bytes, least recently used first out.

    Laid out like stock's outputs (``images/{name}``, ``thumbnails/{stem}.webp``) so a path says what it holds.
    Writes go to a temporary file in the same folder and are renamed into place, so a reader never sees half a
    file. Recency is the file's mtime, refreshed on every hit.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.images = (root / "images").resolve()
        self.thumbnails = (root / "thumbnails").resolve()
        for folder in (self.images, self.thumbnails):
            folder.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes = sum(size for _, size, _ in self._entries())

    def holds(self, path: Path) -> bool:
        """Whether ``path`` names a cache file (not a folder, not a partial write, nothing outside the cache)."""
        return path.parent in (self.images, self.thumbnails) and not path.name.startswith(_PARTIAL_PREFIX)

    def touch(self, path: Path) -> bool:
        """Mark a cached file as just used; False when it is not there."""
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def write(self, path: Path, fill: Callable[[Path], None]) -> None:
        fd, temporary = tempfile.mkstemp(prefix=_PARTIAL_PREFIX, dir=path.parent)
        os.close(fd)
        try:
            fill(Path(temporary))
            size = os.path.getsize(temporary)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        with self._lock:
            self._bytes += size
            if self._bytes > self._max_bytes:
                self._prune(keep=path)

    def remove(self, path: Path) -> None:
        if not self.holds(path):
            return
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            size = path.stat().st_size
            path.unlink()
            with self._lock:
                self._bytes = max(0, self._bytes - size)

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries: list[tuple[float, int, Path]] = []
        for folder in (self.images, self.thumbnails):
            with os.scandir(folder) as scan:
                for entry in scan:
                    with contextlib.suppress(FileNotFoundError):
                        if entry.is_file(follow_symlinks=False):
                            stat = entry.stat(follow_symlinks=False)
                            entries.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        return entries

    def _prune(self, keep: Path) -> None:
        """Drop the least recently used files until the cache fits; never the file just written, and never a
        partial write younger than an hour (another thread may be about to rename it into place)."""
        now = time.time()
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for mtime, size, path in entries:
            partial = path.name.startswith(_PARTIAL_PREFIX)
            if partial and now - mtime < _STALE_PARTIAL_SECONDS:
                continue
            if not partial and (total <= self._max_bytes or path == keep):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
        self._bytes = total


class S3ImageFileStorage(ImageFileStorageBase):
    """Images and their thumbnails as S3 objects under the owner's prefix, found through the object index."""

    def __init__(
        self, storage: ObjectStorage, cache_dir: Path, max_cache_bytes: int = DEFAULT_LOCAL_CACHE_BYTES
    ) -> None:
        self._storage = storage
        self._decoded = _DecodedImages(_DECODED_CACHE_SIZE)
        self._files = _LocalFiles(Path(cache_dir), max_cache_bytes)
        # Local thumbnail names drop the image's extension; this maps them back for validate_path().
        self._thumbnail_names: OrderedDict[str, str] = OrderedDict()
        self._thumbnail_lock = threading.Lock()
        self._invoker: Invoker | None = None

    def start(self, invoker: Invoker) -> None:
        """Keeps the invoker (owners come from the image records, settings from the configuration). Interrupted
        deletes are finished by the object-storage cleanup pass, which reads the journal on any instance."""
        self._invoker = invoker

    @property
    def _services(self) -> InvocationServices:
        if self._invoker is None:
            raise RuntimeError("S3ImageFileStorage used before start()")
        return self._invoker.services

    # --- paths -------------------------------------------------------------------------------------------------

    @property
    def image_root(self) -> Path:
        return self._files.images

    @property
    def thumbnail_root(self) -> Path:
        return self._files.thumbnails

    def _local_path(self, image_name: str, thumbnail: bool, image_subfolder: str) -> Path:
        """Stock's ``get_path`` checks, with the same messages, on the local cache folders. The subfolder is
        validated as stock does and then ignored: objects and their local copies live flat."""
        base_folder = self._files.thumbnails if thumbnail else self._files.images
        filename = get_thumbnail_name(image_name) if thumbnail else image_name
        basename = Path(filename).name
        if basename != filename:
            raise ValueError("Invalid image name, potential directory traversal detected")
        if image_subfolder:
            DiskImageFileStorage._validate_subfolder(image_subfolder)
        resolved = (base_folder / basename).resolve()
        if not resolved.is_relative_to(base_folder):
            raise ValueError("Image path outside outputs folder, potential directory traversal detected")
        return resolved

    def get_path(self, image_name: str, thumbnail: bool = False, image_subfolder: str = "") -> Path:
        """A local file holding the image (or its thumbnail), fetched from S3 unless already cached.

        Without an object the would-be path is returned and nothing is there, as with stock's missing files;
        a stale local copy of a deleted image is removed first, so no caller can serve it. An unreachable S3
        raises ``ObjectStoreUnavailable``: a path that silently did not exist would turn an outage into a 404.
        """
        path = self._local_path(image_name, thumbnail, image_subfolder)
        row = self._storage.index.find(kinds.IMAGE_THUMBNAIL if thumbnail else kinds.IMAGE, image_name)
        if row is None:
            self._files.remove(path)
            return path
        if thumbnail:
            self._remember_thumbnail(path.name, image_name)
        if self._files.touch(path):
            return path
        try:
            self._files.write(path, partial(self._storage.store.download_file, row.object_key))
        except ObjectNotFound:
            self._files.remove(path)
        return path

    def _remember_thumbnail(self, local_name: str, image_name: str) -> None:
        with self._thumbnail_lock:
            self._thumbnail_names[local_name] = image_name
            self._thumbnail_names.move_to_end(local_name)
            while len(self._thumbnail_names) > _REMEMBERED_THUMBNAILS:
                self._thumbnail_names.popitem(last=False)

    def validate_path(self, path: str | Path) -> bool:
        """True when the file is there locally or its object exists in S3 (a pruned copy is still valid: the
        next ``get_path`` fetches it again)."""
        candidate = Path(path)
        if candidate.exists():
            return True
        resolved = candidate.resolve()
        if resolved.parent == self._files.images:
            kind, image_name = kinds.IMAGE, resolved.name
        elif resolved.parent == self._files.thumbnails:
            with self._thumbnail_lock:
                remembered = self._thumbnail_names.get(resolved.name)
            if remembered is None:
                return False
            kind, image_name = kinds.IMAGE_THUMBNAIL, remembered
        else:
            return False
        row = self._storage.index.find(kind, image_name)
        return row is not None and self._storage.store.exists(row.object_key)

    def evict_cache_paths(self, paths: list[Path]) -> None:
        for path in paths:
            resolved = Path(path).resolve()
            if resolved.parent == self._files.images:
                self._decoded.evict(resolved.name)
            self._files.remove(resolved)

    def _evict(self, image_name: str) -> None:
        """Forget every cached copy of an image: decoded, full file and thumbnail file."""
        self._decoded.evict(image_name)
        with contextlib.suppress(ValueError):
            self._files.remove(self._local_path(image_name, False, ""))
            self._files.remove(self._local_path(image_name, True, ""))

    # --- reading -----------------------------------------------------------------------------------------------

    def get(self, image_name: str, image_subfolder: str = "") -> PILImageType:
        self._local_path(image_name, False, image_subfolder)  # stock's name checks (ValueError)
        cached = self._decoded.get(image_name)
        if cached is not None:
            return cached
        row = self._storage.index.find(kinds.IMAGE, image_name)
        if row is None:
            raise ImageFileNotFoundException
        try:
            data = self._storage.store.get_bytes(row.object_key)
        except ObjectNotFound as e:
            raise ImageFileNotFoundException from e
        image = Image.open(io.BytesIO(data))
        # As stock: decode now, because the same cached object is handed to every thread.
        image.load()
        self._decoded.put(image_name, image)
        return image

    def get_workflow(self, image_name: str, image_subfolder: str = "") -> str | None:
        workflow = self.get(image_name, image_subfolder=image_subfolder).info.get("invokeai_workflow", None)
        return workflow if isinstance(workflow, str) else None

    def get_graph(self, image_name: str, image_subfolder: str = "") -> str | None:
        graph = self.get(image_name, image_subfolder=image_subfolder).info.get("invokeai_graph", None)
        return graph if isinstance(graph, str) else None

    # --- writing -----------------------------------------------------------------------------------------------

    def save(
        self,
        image: PILImageType,
        image_name: str,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
        thumbnail_size: int = 256,
        image_subfolder: str = "",
    ) -> None:
        """Stock's entry point, called after the record is saved: the owner comes from the record."""
        try:
            self._local_path(image_name, False, image_subfolder)
            user_id = self._services.image_records.get_user_id(image_name)
            if user_id is None:
                raise ImageRecordNotFoundException
        except Exception as e:
            raise ImageFileSaveException from e
        self.save_for_owner(user_id, image, image_name, metadata, workflow, graph, thumbnail_size)

    def save_for_owner(
        self,
        user_id: str,
        image: PILImageType,
        image_name: str,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
        thumbnail_size: int = 256,
    ) -> None:
        """``save`` for an image whose record does not exist yet: ``S3ImageService.create`` writes the objects
        first, so no record ever names an image whose bytes are not in the bucket."""
        attempted: list[str] = []  # keys this call tried to write: a failed put may still have landed
        existing: set[str] = set()
        try:
            self._local_path(image_name, False, "")
            layout = self._storage.layout
            image_key = layout.image(user_id, image_name)
            thumbnail_key = layout.image_thumbnail(user_id, image_name)
            existing = set(self._storage.index.find_by_keys([thumbnail_key, image_key]))

            pnginfo = PngImagePlugin.PngInfo()
            info_dict = {}
            if metadata is not None:
                info_dict["invokeai_metadata"] = metadata
                pnginfo.add_text("invokeai_metadata", metadata)
            if workflow is not None:
                info_dict["invokeai_workflow"] = workflow
                pnginfo.add_text("invokeai_workflow", workflow)
            if graph is not None:
                info_dict["invokeai_graph"] = graph
                pnginfo.add_text("invokeai_graph", graph)

            # Before image.info is replaced: palette transparency lives there and make_thumbnail() needs it.
            thumbnail_image = make_thumbnail(image, thumbnail_size)
            image.info = info_dict
            compress_level = self._services.configuration.pil_compress_level
            save_options: dict[str, int] = {"compress_level": compress_level}
            if compress_level == 1 and _should_use_png_rle(image):
                save_options["compress_type"] = zlib.Z_RLE
            png = io.BytesIO()
            image.save(png, "PNG", pnginfo=pnginfo, **save_options)
            webp = io.BytesIO()
            thumbnail_image.save(webp, "WEBP")

            # Thumbnail first: an image is listed by its record, and a record whose thumbnail is missing shows a
            # broken tile, while a thumbnail without its image is cleaned up below.
            for key, kind, data, content_type in (
                (thumbnail_key, kinds.IMAGE_THUMBNAIL, webp.getvalue(), WEBP_CONTENT_TYPE),
                (image_key, kinds.IMAGE, png.getvalue(), PNG_CONTENT_TYPE),
            ):
                attempted.append(key)
                self._storage.store.put_bytes(key, data, content_type)
                self._storage.index.put(key, user_id, kind, image_name, len(data), content_type)

            self._evict(image_name)  # an overwrite must not leave the old bytes in a local copy
            self._decoded.put(image_name, image)
        except Exception as e:
            self._decoded.evict(image_name)
            self._discard([key for key in attempted if key not in existing])
            raise ImageFileSaveException from e

    def _discard(self, keys: list[str]) -> None:
        """Undo a failed save's writes. When S3 cannot delete them either, journal them instead: the cleanup
        pass deletes them once the record is gone (stock's ``ImageService`` deletes it after a failed save)."""
        if not keys:
            return
        try:
            self._storage.store.delete_many(keys)
        except Exception as delete_error:
            logger.warning("Could not remove a failed image save's objects (%s); journalled", delete_error)
            with contextlib.suppress(Exception):
                self._storage.index.journal(keys)
            return
        try:
            self._storage.index.forget(keys)
        except Exception as forget_error:
            logger.error("Could not drop a failed image save's index rows: %s", forget_error)

    # --- deleting ----------------------------------------------------------------------------------------------

    def _keys_of(self, image_names: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Every image's (thumbnail, full) keys, in one index query. The thumbnail's key follows from the image's
        owner; an image without an index row has no objects to delete."""
        names = list(dict.fromkeys(image_names))
        rows = self._storage.index.find_many(kinds.IMAGE, names)
        layout = self._storage.layout
        return {name: (layout.image_thumbnail(row.user_id, name), row.object_key) for name, row in rows.items()}

    def delete(self, image_name: str, image_subfolder: str = "") -> None:
        token = self.stage_delete(image_name, image_subfolder)
        self.commit_delete(token)

    def stage_delete(self, image_name: str, image_subfolder: str = "") -> _StagedDelete:
        """Journals the image's keys; the objects stay until ``commit_delete()``, so a rollback has nothing to
        restore. A bad name fails here with stock's ``ValueError``, before any record is touched."""
        self._local_path(image_name, False, image_subfolder)
        try:
            keys = self._keys_of([image_name]).get(image_name, ())
            self._storage.index.journal(keys)
        except Exception as e:
            raise ImageFileDeleteException from e
        return _StagedDelete(image_name=image_name, keys=keys)

    def begin_delete(self, images: Sequence[tuple[str, str]]) -> _PendingDelete:
        """Durably records the intent to purge these images' objects, before their records are deleted. Needs
        only PostgreSQL, so it works while S3 is down."""
        for image_name, image_subfolder in images:
            self._local_path(image_name, False, image_subfolder)
        try:
            keys_by_name = self._keys_of(name for name, _ in images)
            self._storage.index.journal(key for keys in keys_by_name.values() for key in keys)
        except Exception as e:
            raise ImageFileDeleteException from e
        return _PendingDelete(keys_by_name=keys_by_name)

    def abandon_delete(self, token: object) -> None:
        """The records survived: keep the objects and drop the journal entries."""
        if not isinstance(token, _PendingDelete):
            raise ImageFileDeleteException("Invalid pending-delete token")
        try:
            self._storage.index.unjournal(key for keys in token.keys_by_name.values() for key in keys)
        except Exception as e:
            raise ImageFileDeleteException from e

    def commit_delete(self, token: object, image_names: Collection[str] | None = None) -> None:
        if isinstance(token, _PendingDelete):
            selected = token.keys_by_name if image_names is None else set(image_names)
            purge = {name: keys for name, keys in token.keys_by_name.items() if name in selected}
            # The others' records survived (e.g. an intermediate promoted meanwhile): their objects stay.
            survivors = [key for name, keys in token.keys_by_name.items() if name not in selected for key in keys]
            try:
                self._storage.index.unjournal(survivors)
            except Exception as e:
                raise ImageFileDeleteException from e
            self._purge(purge)
            return
        if not isinstance(token, _StagedDelete):
            raise ImageFileDeleteException("Invalid staged-delete token")
        self._purge({token.image_name: token.keys})

    def rollback_delete(self, token: object) -> None:
        """Nothing was moved, so nothing is restored. As stock: if the record vanished meanwhile (another request
        deleted it), the objects must go now; if that cannot be confirmed, the journal stays for the cleanup pass,
        which decides by the record."""
        if not isinstance(token, _StagedDelete):
            raise ImageFileDeleteException("Invalid staged-delete token")
        try:
            record_exists = self._services.image_records.exists(token.image_name)
        except Exception as e:
            logger.error("Could not confirm whether a rolled-back image still exists: %s", e)
            return
        if not record_exists:
            self._purge({token.image_name: token.keys})
            return
        try:
            self._storage.index.unjournal(token.keys)
        except Exception as e:
            raise ImageFileDeleteException from e

    def _purge(self, keys_by_name: dict[str, tuple[str, ...]]) -> None:
        """Delete the objects, then their index rows and journal entries. On failure the journal stays (the
        cleanup pass retries); the message names no key."""
        for image_name in keys_by_name:
            self._evict(image_name)
        keys = [key for keys in keys_by_name.values() for key in keys]
        if not keys:
            return
        try:
            self._storage.store.delete_many(keys)
            self._storage.index.forget(keys)
        except Exception as e:
            raise ImageFileDeleteException("Failed to purge deleted image files") from e
