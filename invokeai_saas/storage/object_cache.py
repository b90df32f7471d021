"""A per-process cache of small objects that never change under their key, for the media routes.

Why: in saas mode every media response is ``private, no-store`` (stock's multiuser policy), so a gallery page
asks the API for the same fifty thumbnails every time it is shown, and each fetch from S3 is a signed boto3
call costing milliseconds of API CPU. Image and video names are fresh uuids and their objects are never
rewritten, so a cached copy can only be wrong by outliving a delete — and the routes look the object up in
the index (and run stock's access check) before they ask the cache, so a deleted or forbidden object is never
served from it. Objects that are rewritten in place (model, preset and workflow images) are not cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from invokeai_saas.storage import kinds

IMMUTABLE_KINDS = frozenset({kinds.IMAGE, kinds.IMAGE_THUMBNAIL, kinds.VIDEO_THUMBNAIL})
MAX_OBJECT_BYTES = 512 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024


class SmallObjectCache:
    """Least recently used first out, bounded in bytes; thread-safe (the routes run in a thread pool)."""

    def __init__(self, max_total_bytes: int = MAX_TOTAL_BYTES, max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self._max_total = max_total_bytes
        self._max_object = max_object_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def accepts(self, kind: str, size: int) -> bool:
        return kind in IMMUTABLE_KINDS and size <= self._max_object

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self._max_object:
            return
        with self._lock:
            previous = self._items.pop(key, None)
            if previous is not None:
                self._total -= len(previous)
            self._items[key] = data
            self._total += len(data)
            while self._total > self._max_total:
                _, evicted = self._items.popitem(last=False)
                self._total -= len(evicted)

    @property
    def total_bytes(self) -> int:
        return self._total
