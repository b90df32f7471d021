"""The media routes' small-object cache: only immutable kinds and small objects, bounded in bytes, least
recently used first out. (That it never serves a deleted image is shown end to end in ``test_s3_e2e.py``: the
full image fetched before the delete answers 404 after it.)"""

from __future__ import annotations

from invokeai_saas.storage import kinds
from invokeai_saas.storage.object_cache import SmallObjectCache


def test_only_small_objects_of_immutable_kinds_are_taken() -> None:
    cache = SmallObjectCache(max_total_bytes=1000, max_object_bytes=100)
    assert cache.accepts(kinds.IMAGE_THUMBNAIL, 100) and cache.accepts(kinds.IMAGE, 1)
    assert cache.accepts(kinds.VIDEO_THUMBNAIL, 50)
    assert not cache.accepts(kinds.IMAGE_THUMBNAIL, 101)
    for rewritten_in_place in (kinds.MODEL_IMAGE, kinds.STYLE_PRESET_IMAGE, kinds.WORKFLOW_THUMBNAIL):
        assert not cache.accepts(rewritten_in_place, 10)
    assert not cache.accepts(kinds.VIDEO, 10) and not cache.accepts(kinds.BULK_DOWNLOAD, 10)
    cache.put("big", b"x" * 101)
    assert cache.get("big") is None and cache.total_bytes == 0


def test_bounded_in_bytes_least_recently_used_first_out() -> None:
    cache = SmallObjectCache(max_total_bytes=250, max_object_bytes=100)
    for key in ("a", "b"):
        cache.put(key, key.encode() * 100)
    assert cache.get("a") == b"a" * 100  # now the most recently used
    cache.put("c", b"c" * 100)  # 300 bytes > 250: the least recently used ("b") goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.total_bytes == 200
    cache.put("a", b"A" * 50)  # replacing keeps the total exact
    assert cache.get("a") == b"A" * 50 and cache.total_bytes == 150
