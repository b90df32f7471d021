"""Videos, their first-frame thumbnails and their metadata sidecars on S3, behind stock's ``VideoFileStorageBase``.

The objects are stock's files byte for byte (the uploaded MP4 unchanged, the same WEBP thumbnail, the same sidecar
JSON), so a video moved between a disk install and a saas install looks the same to every reader. Three things
differ, each because S3 is shared by many processes and many tenants:

- **Keys carry the owner.** Stock's methods pass only the video's name; the owner comes from the video record
  (saved by ``VideoService.create`` before the files) when writing, and from the object index afterwards.
- **Deletes are promises in PostgreSQL.** ``stage_delete`` runs before the record delete and moves nothing: it
  journals the keys, so an S3 outage or a crash between the record delete and the object delete leaves a note the
  cleanup pass finishes, never an orphan. ``rollback_delete`` withdraws the promise; the objects never moved.
- **``get_path`` downloads.** Stock's video nodes hand the path to a decoder subprocess, so it must be a real
  local file: the object is materialised into a bounded least-recently-used cache on this machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai.app.services.invoker import Invoker
from invokeai.app.services.video_files.video_files_base import VideoFileStorageBase
from invokeai.app.services.video_files.video_files_common import (
    VideoFileDeleteException,
    VideoFileNotFoundException,
    VideoFileSaveException,
)
from invokeai.app.services.video_files.video_files_disk import DiskVideoFileStorage
from invokeai.app.util.thumbnails import make_thumbnail
from invokeai.app.util.video_thumbnails import extract_video_frame, get_video_thumbnail_name
from invokeai.backend.util.logging import InvokeAILogger
from PIL import Image

from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.keys import safe_name
from invokeai_saas.storage.object_index import IndexedObject
from invokeai_saas.storage.object_store import ObjectNotFound

VIDEO_CONTENT_TYPE = "video/mp4"  # stock's routes serve every video as video/mp4 (uploads must be MP4)
THUMBNAIL_CONTENT_TYPE = "image/webp"
SIDECAR_CONTENT_TYPE = "application/json"
# A worker decodes a handful of videos per job; a few GiB keeps the working set local without filling the disk.
DEFAULT_CACHE_BYTES = 4 * 1024**3
_PART_SUFFIX = ".part"


@dataclass(frozen=True)
class _StagedDelete:
    """The promise made by ``stage_delete``: the keys journalled for this video (none if it had no objects)."""

    video_name: str
    object_keys: tuple[str, ...]


class S3VideoFileStorage(VideoFileStorageBase):
    def __init__(self, storage: ObjectStorage, cache_dir: Path, max_cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """``cache_dir`` holds only copies (videos in ``videos/``, thumbnails in ``thumbnails/``, two folders so no
        video name can collide with the thumbnail folder): S3 and the index are the truth, so any file here may go."""
        self._storage = storage
        self._videos_dir = Path(cache_dir) / "videos"
        self._thumbnails_dir = Path(cache_dir) / "thumbnails"
        self._max_cache_bytes = max_cache_bytes
        self._eviction_lock = threading.Lock()
        self._videos_dir.mkdir(parents=True, exist_ok=True)
        self._thumbnails_dir.mkdir(parents=True, exist_ok=True)

    def start(self, invoker: Invoker) -> None:
        """Stock recovers its staged deletes here; ours are journal rows the storage cleanup pass finishes on
        whichever process runs it, so only the invoker (for record owners) is needed."""
        self._invoker = invoker

    # --- writing ------------------------------------------------------------------------------------------------------

    def save(
        self,
        source_path: Path,
        video_name: str,
        thumbnail_size: int = 256,
        video_subfolder: str = "",
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
        first_frame: Image.Image | None = None,
    ) -> None:
        """Stock's entry point, called after the record is saved: the owner comes from the record."""
        try:
            self._local_path(video_name, False, video_subfolder)  # stock's name checks, as stock's get_path in save
            user_id = self._invoker.services.video_records.get_user_id(video_name)
            if user_id is None:  # VideoService.create saves the record first; without one nobody owns the video
                raise LookupError("no video record")
        except Exception as e:
            raise VideoFileSaveException from e
        self.save_for_owner(user_id, source_path, video_name, thumbnail_size, metadata, workflow, graph, first_frame)

    def save_for_owner(
        self,
        user_id: str,
        source_path: Path,
        video_name: str,
        thumbnail_size: int = 256,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
        first_frame: Image.Image | None = None,
    ) -> None:
        """Upload the video, its thumbnail and (when there is anything to keep) its sidecar, indexing each object
        as soon as S3 has it; then consume the source as stock's move does. Any failure removes what was written,
        so the caller can roll its record back without leaving objects behind. ``S3VideoService.create`` calls
        this before the record exists, so no record ever names a video whose bytes are not in the bucket."""
        logger = InvokeAILogger.get_logger()
        written: list[str] = []
        try:
            self._local_path(video_name, False, "")
            layout = self._storage.layout
            video_key = layout.video(user_id, video_name)
            thumbnail_key = layout.video_thumbnail(user_id, video_name)
            sidecar_key = layout.video_sidecar(user_id, video_name)

            thumbnail = self._thumbnail_bytes(Path(source_path), video_name, thumbnail_size, first_frame)
            sidecar = None
            if metadata is not None or workflow is not None or graph is not None:
                document = {"invokeai_metadata": metadata, "invokeai_workflow": workflow, "invokeai_graph": graph}
                sidecar = json.dumps(document).encode("utf-8")  # json.dump(f) writes exactly these characters

            video_size = os.path.getsize(source_path)
            written.append(video_key)
            self._storage.store.put_file(video_key, Path(source_path), VIDEO_CONTENT_TYPE)
            self._index(video_key, user_id, kinds.VIDEO, video_name, video_size, VIDEO_CONTENT_TYPE)
            logger.info(f"Video file written: {video_name}")
            if thumbnail is not None:
                written.append(thumbnail_key)
                self._put(thumbnail_key, user_id, kinds.VIDEO_THUMBNAIL, video_name, thumbnail, THUMBNAIL_CONTENT_TYPE)
                logger.info(f"Thumbnail written: {video_name}")
            if sidecar is not None:
                written.append(sidecar_key)
                self._put(sidecar_key, user_id, kinds.VIDEO_SIDECAR, video_name, sidecar, SIDECAR_CONTENT_TYPE)
                logger.info(f"Sidecar written: {video_name}")
        except Exception as e:
            self._discard(written, video_name)
            raise VideoFileSaveException from e
        try:
            Path(source_path).unlink(missing_ok=True)
        except OSError as e:  # the video is stored; a leftover temporary file is not worth failing the save for
            logger.warning(f"Could not remove the uploaded source of {video_name}: {type(e).__name__}")

    def _thumbnail_bytes(
        self, source_path: Path, video_name: str, thumbnail_size: int, first_frame: Image.Image | None
    ) -> bytes | None:
        """Stock's thumbnail: frame 0 (given, or decoded from the local source before it is consumed) through
        ``make_thumbnail`` as WEBP with Pillow's defaults. A frame that cannot be decoded only costs the thumbnail,
        as in stock; a frame that cannot be encoded fails the save, as in stock."""
        logger = InvokeAILogger.get_logger()
        frame = first_frame
        if frame is None:
            try:
                frame = extract_video_frame(source_path, frame_index=0)
            except Exception as e:
                logger.warning(f"Thumbnail extraction raised for {video_name}: {e}")
                frame = None
        if frame is None:
            logger.warning(f"Could not extract a thumbnail frame for {video_name}; gallery thumbnail will be missing.")
            return None
        buffer = io.BytesIO()
        make_thumbnail(frame, thumbnail_size).save(buffer, "WEBP")
        return buffer.getvalue()

    def _put(self, key: str, user_id: str, kind: str, name: str, data: bytes, content_type: str) -> None:
        self._storage.store.put_bytes(key, data, content_type)
        self._index(key, user_id, kind, name, len(data), content_type)

    def _index(self, key: str, user_id: str, kind: str, name: str, size: int, content_type: str) -> None:
        self._storage.index.put(key, user_id, kind, name, size, content_type)

    def _discard(self, object_keys: list[str], video_name: str) -> None:
        """Undo a failed save. The key being written when it failed is included: S3 may have stored it even if the
        answer never arrived. If S3 cannot delete now, the keys are journalled for the cleanup pass instead."""
        if not object_keys:
            return
        try:
            self._storage.store.delete_many(object_keys)
            self._storage.index.forget(object_keys)
        except Exception as cleanup_error:
            InvokeAILogger.get_logger().error(
                f"Failed to clean up partially saved files for {video_name}: {type(cleanup_error).__name__}"
            )
            with contextlib.suppress(Exception):
                self._storage.index.journal(object_keys)

    # --- deleting -----------------------------------------------------------------------------------------------------

    def delete(self, video_name: str, video_subfolder: str = "") -> None:
        token = self.stage_delete(video_name, video_subfolder)
        self.commit_delete(token)

    def stage_delete(self, video_name: str, video_subfolder: str = "") -> _StagedDelete:
        """Journal the video's keys; nothing is deleted yet, so S3 need not be reachable and a rollback is free."""
        self._local_path(video_name, False, video_subfolder)  # stock's ValueErrors for a bad name or subfolder
        self._local_path(video_name, True, video_subfolder)
        try:
            found = [self._find(kind, video_name) for kind in (kinds.VIDEO, kinds.VIDEO_THUMBNAIL, kinds.VIDEO_SIDECAR)]
            object_keys = tuple(obj.object_key for obj in found if obj is not None)
            self._storage.index.journal(object_keys)
        except Exception as e:
            raise VideoFileDeleteException from e
        return _StagedDelete(video_name=video_name, object_keys=object_keys)

    def commit_delete(self, token: object) -> None:
        """Delete the objects, then forget them. If S3 fails, the journal stays for the cleanup pass and the error
        is stock's (``VideoService`` logs it: the video is deleted as far as the user is concerned)."""
        if not isinstance(token, _StagedDelete):
            raise VideoFileDeleteException("Invalid staged-delete token")
        try:
            self._storage.store.delete_many(token.object_keys)
            self._storage.index.forget(token.object_keys)
        except Exception as e:
            raise VideoFileDeleteException from e
        for thumbnail in (False, True):  # this process's copies; other processes drop theirs at their next get_path
            with contextlib.suppress(OSError, ValueError):
                self._local_path(token.video_name, thumbnail, "").unlink(missing_ok=True)

    def rollback_delete(self, token: object) -> None:
        if not isinstance(token, _StagedDelete):
            raise VideoFileDeleteException("Invalid staged-delete token")
        try:
            self._storage.index.unjournal(token.object_keys)
        except Exception as e:
            raise VideoFileDeleteException from e

    # --- reading ------------------------------------------------------------------------------------------------------

    def get_path(self, video_name: str, thumbnail: bool = False, video_subfolder: str = "") -> Path:
        """A local copy of the video (or its thumbnail) for the callers that need a file: stock's video nodes and
        routes. As in stock, a video without a stored object still gets a path, one that does not exist; a copy
        whose object was deleted (by any process) is removed first. ``ObjectStoreUnavailable`` propagates."""
        path = self._local_path(video_name, thumbnail, video_subfolder)
        safe_name(video_name)  # and the object layout's (InvalidObjectName is a ValueError too)
        obj = self._find(kinds.VIDEO_THUMBNAIL if thumbnail else kinds.VIDEO, video_name)
        if obj is None:
            path.unlink(missing_ok=True)
            return path
        if not self._is_cached(path, obj):
            self._download(obj, path)
        self._evict(keep=path)
        return path

    def validate_path(self, path: str | Path) -> bool:
        """Stock's meaning: the path names an existing file (``get_path`` only leaves files for stored objects)."""
        return Path(path).exists()

    def get_workflow(self, video_name: str, video_subfolder: str = "") -> str | None:
        workflow = self._read_sidecar(video_name, video_subfolder).get("invokeai_workflow")
        return workflow if isinstance(workflow, str) else None

    def get_graph(self, video_name: str, video_subfolder: str = "") -> str | None:
        graph = self._read_sidecar(video_name, video_subfolder).get("invokeai_graph")
        return graph if isinstance(graph, str) else None

    def _read_sidecar(self, video_name: str, video_subfolder: str) -> dict[str, Any]:
        """The sidecar's JSON; ``{}`` when the video has none (stock: no file → None). An object that is not a JSON
        object is "unreadable" (stock: ``VideoFileNotFoundException``)."""
        if video_subfolder:
            DiskVideoFileStorage._validate_subfolder(video_subfolder)
        obj = self._find(kinds.VIDEO_SIDECAR, video_name)
        if obj is None:
            return {}
        try:
            data = self._storage.store.get_bytes(obj.object_key)
        except ObjectNotFound:
            return {}
        try:
            document = json.loads(data.decode("utf-8"))
        except Exception as e:
            raise VideoFileNotFoundException from e
        if not isinstance(document, dict):
            raise VideoFileNotFoundException
        return document

    # --- the local cache ----------------------------------------------------------------------------------------------

    def _local_path(self, video_name: str, thumbnail: bool, video_subfolder: str) -> Path:
        """Stock's ``get_path`` checks with stock's messages, on the cache's own layout. Subfolders are validated
        but not used: object keys ignore them, so the cache does too."""
        base_folder = self._thumbnails_dir if thumbnail else self._videos_dir
        filename = get_video_thumbnail_name(video_name) if thumbnail else video_name
        basename = Path(filename).name
        if basename != filename:
            raise ValueError("Invalid video name, potential directory traversal detected")
        if video_subfolder:
            DiskVideoFileStorage._validate_subfolder(video_subfolder)
        resolved_base = base_folder.resolve()
        resolved_path = (base_folder / basename).resolve()
        if not resolved_path.is_relative_to(resolved_base):
            raise ValueError("Video path outside outputs folder, potential directory traversal detected")
        return resolved_path

    def _find(self, kind: str, video_name: str) -> IndexedObject | None:
        return self._storage.index.find(kind, video_name)

    @staticmethod
    def _is_cached(path: Path, obj: IndexedObject) -> bool:
        """A copy of the right size is the object: names are unique and objects are never rewritten in place."""
        try:
            if path.stat().st_size != obj.bytes:
                return False
            os.utime(path)  # most recently used
        except OSError:
            return False
        return True

    def _download(self, obj: IndexedObject, path: Path) -> None:
        """Download beside the target and rename into place: a reader (a decoder in another process) never sees
        half a file, and two threads fetching the same video each rename a complete copy."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_PART_SUFFIX)
        os.close(handle)
        try:
            self._storage.store.download_file(obj.object_key, Path(temporary))
            os.replace(temporary, path)
        except ObjectNotFound:  # indexed but gone: another process's delete is in flight
            path.unlink(missing_ok=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def _evict(self, keep: Path) -> None:
        """Keep the cache under its bound by removing the least recently used copies (never ``keep``, the copy
        about to be handed out). A decoder that already opened an evicted file keeps reading it: unlink only
        removes the name."""
        with self._eviction_lock:
            entries: list[tuple[float, int, Path]] = []
            for folder in (self._videos_dir, self._thumbnails_dir):
                with os.scandir(folder) as listing:
                    for entry in listing:
                        if not entry.is_file(follow_symlinks=False) or entry.name.endswith(_PART_SUFFIX):
                            continue
                        with contextlib.suppress(FileNotFoundError):
                            stat = entry.stat(follow_symlinks=False)
                            entries.append((stat.st_mtime, stat.st_size, Path(entry.path)))
            total = sum(size for _, size, _ in entries)
            for _, size, candidate in sorted(entries, key=lambda item: item[0]):
                if total <= self._max_cache_bytes:
                    break
                if candidate == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    candidate.unlink()
                total -= size
