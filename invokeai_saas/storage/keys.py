"""Where each kind of media lives in the bucket: one prefix per tenant, so an operator can list, copy, bill
or erase one user's objects with a prefix, and no key is derived from anything a client can choose beyond
the media's own (validated) name.

Subfolders (InvokeAI's ``image_subfolder_strategy``) exist to keep local directories small; S3 has no
directories, so keys ignore them and a subfolder move never has to move an object.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# What a media name may look like before it becomes part of a key: InvokeAI's names are uuid-based file names;
# model keys and preset/workflow ids are hex/uuid-like. Anything with a slash, a dot-dot or odd characters is
# refused here, whatever the caller checked before.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class InvalidObjectName(ValueError):
    """A media name that cannot be part of an object key (traversal, separators, odd characters)."""


def safe_name(name: str) -> str:
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise InvalidObjectName("invalid media name")
    return name


def _stem(name: str) -> str:
    return PurePosixPath(name).stem


class KeyLayout:
    """Object keys under an optional bucket prefix (``s3_prefix``, e.g. ``prod/``)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def _user(self, user_id: str, *parts: str) -> str:
        return self.prefix + "/".join(("users", safe_name(user_id), *parts))

    def image(self, user_id: str, image_name: str) -> str:
        return self._user(user_id, "images", safe_name(image_name))

    def image_thumbnail(self, user_id: str, image_name: str) -> str:
        return self._user(user_id, "images", "thumbnails", _stem(safe_name(image_name)) + ".webp")

    def video(self, user_id: str, video_name: str) -> str:
        return self._user(user_id, "videos", safe_name(video_name))

    def video_thumbnail(self, user_id: str, video_name: str) -> str:
        return self._user(user_id, "videos", "thumbnails", _stem(safe_name(video_name)) + ".webp")

    def video_sidecar(self, user_id: str, video_name: str) -> str:
        return self._user(user_id, "videos", "sidecars", _stem(safe_name(video_name)) + ".json")

    def style_preset_image(self, user_id: str, style_preset_id: str) -> str:
        return self._user(user_id, "style_presets", safe_name(style_preset_id) + ".webp")

    def workflow_thumbnail(self, user_id: str, workflow_id: str) -> str:
        return self._user(user_id, "workflow_thumbnails", safe_name(workflow_id) + ".webp")

    def model_image(self, model_key: str) -> str:
        """Model images are shared by every user (models are installed by admins for everyone)."""
        return self.prefix + "shared/model_images/" + safe_name(model_key) + ".webp"

    def bulk_download(self, user_id: str, item_name: str) -> str:
        """Temporary archives: a top-level prefix of their own so a lifecycle rule can expire them."""
        return self.prefix + "bulk_downloads/" + safe_name(user_id) + "/" + safe_name(item_name)
