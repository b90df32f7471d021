"""The S3 media routes on real ``invokeai-web`` processes in saas mode (PostgreSQL + SeaweedFS).

``saas_web`` streams (the default ``s3_serve_mode``). A second server shares its database and bucket in
redirect mode; its own S3 endpoint is dead while its public endpoint is the real SeaweedFS, which shows
both that presigned URLs are signed for the public host (they still work) and that every request that
needs S3 in that process answers 503 without details.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zipfile import ZipFile

import httpx
import imageio.v2 as imageio
import numpy as np
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from invokeai.app.services.image_files.image_files_common import ImageFileSaveException
from invokeai.app.services.style_preset_images import style_preset_images_disk
from PIL import Image
from sqlalchemy import Engine, create_engine

from invokeai_saas.config import SaasSettings
from invokeai_saas.db import migrate
from invokeai_saas.db.engine import get_engine
from invokeai_saas.devstack import LocalStack
from invokeai_saas.devstack.web import InvokeAIWebServer
from invokeai_saas.routes.media_delivery import BrowserUrls
from invokeai_saas.storage import kinds
from invokeai_saas.storage.context import ObjectStorage
from invokeai_saas.storage.http_errors import UNAVAILABLE_DETAIL, install_object_store_error_handlers
from invokeai_saas.storage.keys import KeyLayout
from invokeai_saas.storage.object_index import IndexedObject, StorageObjectIndex
from invokeai_saas.storage.object_store import ObjectStoreUnavailable, S3ObjectStore
from tests.support.credits import set_plan
from tests.support.invokeai import TEST_ENV, admin_token, upload_image

DEAD_ENDPOINT = "http://127.0.0.1:1"
RANGE_CHUNK = 1024 * 1024
MEDIA_COOKIE = "invokeai_media_token"


@dataclass(frozen=True)
class Bucket:
    """What the servers stored, read directly (the index row and the object's bytes)."""

    store: S3ObjectStore
    index: StorageObjectIndex
    layout: KeyLayout

    def row(self, kind: str, name: str) -> IndexedObject:
        found = self.index.find(kind, name)
        assert found is not None, (kind, name)
        return found

    def stored(self, kind: str, name: str) -> bytes:
        return self.store.get_bytes(self.row(kind, name).object_key)


@dataclass(frozen=True)
class Accounts:
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]
    alice_token: str


@pytest.fixture(scope="module")
def bucket(stack: LocalStack) -> Bucket:
    settings = SaasSettings(enabled=True, **stack.saas_settings())  # type: ignore[arg-type]
    return Bucket(S3ObjectStore(settings), StorageObjectIndex(get_engine(settings)), KeyLayout(settings.s3_prefix))


def _user(base_url: str, admin: dict[str, str], label: str) -> tuple[dict[str, str], str]:
    email, password = f"{label}-{uuid.uuid4().hex[:8]}@example.com", "Media-user-password-42"
    r = httpx.post(
        f"{base_url}/api/v1/auth/users",
        json={"email": email, "display_name": label, "password": password},
        headers=admin,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base_url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    token = str(r.json()["token"])
    return {"Authorization": f"Bearer {token}"}, token


@pytest.fixture(scope="module")
def accounts(saas_web: InvokeAIWebServer) -> Accounts:
    admin = {"Authorization": f"Bearer {admin_token(saas_web.url)}"}
    alice, alice_token = _user(saas_web.url, admin, "alice")
    bob, _ = _user(saas_web.url, admin, "bob")
    return Accounts(admin, alice, bob, alice_token)


@pytest.fixture(scope="module")
def redirect_web(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InvokeAIWebServer]:
    migrate.upgrade_url(str(stack.saas_settings()["database_url"]))
    settings = {
        "enabled": True,
        **stack.saas_settings(),
        "s3_serve_mode": "redirect",
        "s3_endpoint_url": DEAD_ENDPOINT,
        "s3_public_endpoint_url": stack.s3.endpoint_url,
    }
    web = InvokeAIWebServer(tmp_path_factory.mktemp("media-redirect"), saas_settings=settings, env=dict(TEST_ENV))
    web.start(timeout=240)
    try:
        yield web
    finally:
        web.stop(timeout=30)


def _png(color: tuple[int, int, int], size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def alice_image(saas_web: InvokeAIWebServer, accounts: Accounts) -> str:
    r = upload_image(saas_web.url, accounts.alice, _png((200, 40, 40)))
    assert r.status_code == 201, r.text
    return str(r.json()["image_name"])


def _noise_mp4(path: Path) -> bytes:
    """A short H.264 MP4 of noise (so it is well over one Range chunk), encoded by imageio's bundled ffmpeg."""
    frames = np.random.default_rng(7).integers(0, 256, size=(16, 240, 320, 3), dtype=np.uint8)
    with imageio.get_writer(
        path, format="FFMPEG", mode="I", fps=8, codec="libx264", bitrate="24M", macro_block_size=1
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path.read_bytes()


@pytest.fixture(scope="module")
def alice_video(saas_web: InvokeAIWebServer, accounts: Accounts, tmp_path_factory: pytest.TempPathFactory) -> str:
    data = _noise_mp4(tmp_path_factory.mktemp("video") / "noise.mp4")
    r = httpx.post(
        f"{saas_web.url}/api/v1/videos/upload",
        params={"video_category": "user", "is_intermediate": "false"},
        files={"file": ("noise.mp4", data, "video/mp4")},
        headers=accounts.alice,
        timeout=120,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["video_name"])


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {"detail": UNAVAILABLE_DETAIL}
    assert r.headers["retry-after"].isdigit()
    assert "Traceback" not in r.text and "127.0.0.1" not in r.text and "users/" not in r.text


# --- the 503 mapping on its own (a real FastAPI app, no servers) ------------------------------------------------


def _failing_app() -> FastAPI:
    """Routes that fail the ways stock routes do when their storage fails."""
    app = FastAPI()

    def save() -> None:
        try:
            raise ObjectStoreUnavailable("EndpointConnectionError")
        except ObjectStoreUnavailable as error:
            raise ImageFileSaveException("users/alice/images/secret.png") from error

    @app.get("/stock-style")
    def stock_style() -> None:
        try:
            save()
        except Exception:
            raise HTTPException(status_code=500, detail="Failed to create image") from None

    @app.get("/unhandled")
    def unhandled() -> None:
        save()

    @app.get("/direct")
    def direct() -> None:
        raise ObjectStoreUnavailable("SlowDown")

    @app.get("/not-found")
    def not_found() -> None:
        try:
            {}["key"]
        except KeyError:
            raise HTTPException(status_code=404, detail="Image not found") from None

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("users/alice/images/secret.png")

    install_object_store_error_handlers(app)
    return app


def test_outages_anywhere_in_the_chain_answer_503_and_other_errors_are_unchanged() -> None:
    client = TestClient(_failing_app(), raise_server_exceptions=False)
    for path in ("/stock-style", "/unhandled", "/direct"):
        _assert_unavailable(client.get(path))
    not_found = client.get("/not-found")
    assert not_found.status_code == 404 and not_found.json() == {"detail": "Image not found"}
    bug = client.get("/bug")
    assert bug.status_code == 500 and bug.text == "Internal Server Error"


def _offline_storage(**overrides: object) -> ObjectStorage:
    """An object storage whose presigning never touches the network (signing is local)."""
    values: dict[str, object] = {
        "enabled": True,
        "s3_bucket": "media",
        "s3_endpoint_url": "http://s3.internal:8333",
        "s3_access_key_id": "key-id",
        "s3_secret_access_key": "secret",
        "s3_serve_mode": "redirect",
    }
    values.update(overrides)
    settings = SaasSettings(**values)  # type: ignore[arg-type]
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected
    return ObjectStorage(S3ObjectStore(settings), StorageObjectIndex(engine), KeyLayout(""), settings)


def test_redirect_urls_target_the_browser_endpoint_or_the_cdn() -> None:
    key = "users/alice/images/a b.png"
    headers = {"Content-Disposition": 'inline; filename="a b.png"', "Cache-Control": "private, no-store"}
    internal = BrowserUrls(_offline_storage()).url_for(key, 300, headers, "image/png")
    assert internal.startswith("http://s3.internal:8333/media/users/alice/images/a%20b.png?")
    query = parse_qs(urlsplit(internal).query)
    assert query["response-content-type"] == ["image/png"]
    assert query["response-content-disposition"] == ['inline; filename="a b.png"']
    assert query["response-cache-control"] == ["private, no-store"]
    assert query["X-Amz-Expires"] == ["300"]

    public = BrowserUrls(_offline_storage(s3_public_endpoint_url="https://media.example.com")).url_for(
        key, 60, headers, "image/png"
    )
    assert public.startswith("https://media.example.com/media/users/alice/images/a%20b.png?")

    cdn = BrowserUrls(_offline_storage(s3_cdn_base_url="https://cdn.example.com/assets/")).url_for(
        key, 60, headers, "image/png"
    )
    assert cdn == "https://cdn.example.com/assets/users/alice/images/a%20b.png"


# --- images -----------------------------------------------------------------------------------------------


def test_image_full_and_thumbnail_stream_the_stored_objects(
    saas_web: InvokeAIWebServer, accounts: Accounts, alice_image: str, bucket: Bucket
) -> None:
    full = httpx.get(f"{saas_web.url}/api/v1/images/i/{alice_image}/full", headers=accounts.alice, timeout=30)
    assert full.status_code == 200
    assert full.content == bucket.stored(kinds.IMAGE, alice_image)
    assert Image.open(io.BytesIO(full.content)).size == (48, 48)
    assert full.headers["content-type"] == "image/png"
    assert full.headers["cache-control"] == "private, no-store"
    assert full.headers["content-disposition"] == f'inline; filename="{alice_image}"'
    assert full.headers["content-length"] == str(len(full.content))

    thumb = httpx.get(f"{saas_web.url}/api/v1/images/i/{alice_image}/thumbnail", headers=accounts.alice, timeout=30)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.content == bucket.stored(kinds.IMAGE_THUMBNAIL, alice_image)
    assert thumb.headers["cache-control"] == "private, no-store"

    # The browser's way in: the media cookie alone, no Authorization header.
    by_cookie = httpx.get(
        f"{saas_web.url}/api/v1/images/i/{alice_image}/full",
        headers={"Cookie": f"{MEDIA_COOKIE}={accounts.alice_token}"},
        timeout=30,
    )
    assert by_cookie.status_code == 200 and by_cookie.content == full.content


def test_image_head_answers_from_the_index(
    saas_web: InvokeAIWebServer, accounts: Accounts, alice_image: str, bucket: Bucket
) -> None:
    r = httpx.head(f"{saas_web.url}/api/v1/images/i/{alice_image}/full", headers=accounts.alice, timeout=30)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(bucket.row(kinds.IMAGE, alice_image).bytes)
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == f'inline; filename="{alice_image}"'


def test_other_users_never_reach_the_image(saas_web: InvokeAIWebServer, accounts: Accounts, alice_image: str) -> None:
    base = f"{saas_web.url}/api/v1/images/i"
    for method, suffix in (("GET", "full"), ("HEAD", "full"), ("GET", "thumbnail")):
        r = httpx.request(method, f"{base}/{alice_image}/{suffix}", headers=accounts.bob, timeout=30)
        assert r.status_code == 403, (method, suffix)
        assert b"\x89PNG" not in r.content and b"RIFF" not in r.content
        anonymous = httpx.request(method, f"{base}/{alice_image}/{suffix}", timeout=30)
        assert anonymous.status_code == 401
    assert httpx.get(f"{base}/{uuid.uuid4()}.png/full", headers=accounts.bob, timeout=30).status_code == 404
    assert httpx.get(f"{base}/{alice_image}/full", headers=accounts.admin, timeout=30).status_code == 200


def test_a_missing_object_is_a_404_like_a_missing_file(
    saas_web: InvokeAIWebServer, accounts: Accounts, bucket: Bucket
) -> None:
    r = upload_image(saas_web.url, accounts.alice, _png((7, 70, 170)))
    assert r.status_code == 201, r.text
    name = r.json()["image_name"]
    url = f"{saas_web.url}/api/v1/images/i/{name}"
    full = bucket.row(kinds.IMAGE, name)

    bucket.store.delete(full.object_key)  # the object is gone, its index row is not
    assert httpx.get(f"{url}/full", headers=accounts.alice, timeout=30).status_code == 404
    bucket.index.forget([full.object_key])  # and now the row too
    assert httpx.get(f"{url}/full", headers=accounts.alice, timeout=30).status_code == 404
    assert httpx.head(f"{url}/full", headers=accounts.alice, timeout=30).status_code == 404
    assert httpx.get(f"{url}/thumbnail", headers=accounts.alice, timeout=30).status_code == 200


# --- videos -----------------------------------------------------------------------------------------------


def test_video_range_requests_follow_stock(
    saas_web: InvokeAIWebServer, accounts: Accounts, alice_video: str, bucket: Bucket
) -> None:
    url = f"{saas_web.url}/api/v1/videos/i/{alice_video}/full"
    stored = bucket.stored(kinds.VIDEO, alice_video)
    size = len(stored)
    assert size > RANGE_CHUNK + 1000  # so that a 206 has to stop at one chunk

    whole = httpx.get(url, headers=accounts.alice, timeout=60)
    assert whole.status_code == 200 and whole.content == stored
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"] == f'inline; filename="{alice_video}"'

    first = httpx.get(url, headers={**accounts.alice, "Range": "bytes=0-"}, timeout=30)
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-{RANGE_CHUNK - 1}/{size}"
    assert first.headers["content-length"] == str(RANGE_CHUNK) and first.content == stored[:RANGE_CHUNK]

    middle = httpx.get(url, headers={**accounts.alice, "Range": "bytes=100-199"}, timeout=30)
    assert middle.status_code == 206 and middle.content == stored[100:200]
    assert middle.headers["content-range"] == f"bytes 100-199/{size}"

    tail = httpx.get(url, headers={**accounts.alice, "Range": "bytes=-10"}, timeout=30)
    assert tail.status_code == 206 and tail.content == stored[-10:]
    assert tail.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"

    for unsatisfiable in (f"bytes={size}-", "bytes=9-3", "items=0-1", "bytes=0-1,5-6"):
        r = httpx.get(url, headers={**accounts.alice, "Range": unsatisfiable}, timeout=30)
        assert r.status_code == 416, unsatisfiable
        assert r.headers["content-range"] == f"bytes */{size}"

    head = httpx.head(url, headers=accounts.alice, timeout=30)
    assert head.status_code == 200 and head.headers["content-length"] == str(size)
    assert head.headers["accept-ranges"] == "bytes"

    thumb = httpx.get(f"{saas_web.url}/api/v1/videos/i/{alice_video}/thumbnail", headers=accounts.alice, timeout=30)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.content == bucket.stored(kinds.VIDEO_THUMBNAIL, alice_video)


def test_other_users_never_reach_the_video(saas_web: InvokeAIWebServer, accounts: Accounts, alice_video: str) -> None:
    base = f"{saas_web.url}/api/v1/videos/i/{alice_video}"
    assert httpx.get(f"{base}/full", headers={**accounts.bob, "Range": "bytes=0-99"}, timeout=30).status_code == 403
    assert httpx.head(f"{base}/full", headers=accounts.bob, timeout=30).status_code == 403
    assert httpx.get(f"{base}/thumbnail", headers=accounts.bob, timeout=30).status_code == 403
    missing = f"{saas_web.url}/api/v1/videos/i/{uuid.uuid4()}.mp4/full"
    assert httpx.get(missing, headers=accounts.bob, timeout=30).status_code == 404


# --- previews ---------------------------------------------------------------------------------------------


def test_style_preset_images_accept_the_media_cookie(
    saas_web: InvokeAIWebServer, accounts: Accounts, bucket: Bucket
) -> None:
    data = {"name": "Crimson", "positive_prompt": "red", "negative_prompt": "", "type": "user"}
    r = httpx.post(
        f"{saas_web.url}/api/v1/style_presets/",
        data={"data": json.dumps(data)},
        files={"image": ("preset.png", _png((180, 0, 0), 64), "image/png")},
        headers=accounts.alice,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    preset_id = r.json()["id"]
    url = f"{saas_web.url}/api/v1/style_presets/i/{preset_id}/image"
    r = httpx.get(url, headers={"Cookie": f"{MEDIA_COOKIE}={accounts.alice_token}"}, timeout=30)
    assert r.status_code == 200
    assert r.content == bucket.stored(kinds.STYLE_PRESET_IMAGE, preset_id)
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == f'inline; filename="{preset_id}.png"'
    assert r.headers["cache-control"] == "max-age=31536000"
    assert httpx.get(url, headers=accounts.bob, timeout=30).status_code == 403  # a private preset
    assert httpx.get(url, timeout=30).status_code == 401

    presets = httpx.get(f"{saas_web.url}/api/v1/style_presets/", headers=accounts.alice, timeout=30).json()
    default = next(p for p in presets if p["type"] == "default")
    r = httpx.get(
        f"{saas_web.url}/api/v1/style_presets/i/{default['id']}/image",
        headers={"Cookie": f"{MEDIA_COOKIE}={accounts.alice_token}"},
        timeout=30,
    )
    packaged = Path(style_preset_images_disk.__file__).parent / "default_style_preset_images" / f"{default['name']}.png"
    assert r.status_code == 200 and r.content == packaged.read_bytes()


def test_workflow_thumbnails_stay_unauthenticated_like_stock(
    saas_web: InvokeAIWebServer, accounts: Accounts, bucket: Bucket, saas_db: Engine
) -> None:
    # Workflows need a plan with the node editor (Trial has none; see invokeai_saas/credits/access.py).
    alice_id = httpx.get(f"{saas_web.url}/api/v1/auth/me", headers=accounts.alice, timeout=30).json()["user_id"]
    set_plan(saas_db, alice_id, "starter")
    listed = httpx.get(f"{saas_web.url}/api/v1/workflows/", params={"per_page": 1}, headers=accounts.alice).json()
    template = httpx.get(
        f"{saas_web.url}/api/v1/workflows/i/{listed['items'][0]['workflow_id']}", headers=accounts.alice
    ).json()["workflow"]
    template.pop("id", None)
    template["meta"]["category"] = "user"
    r = httpx.post(f"{saas_web.url}/api/v1/workflows/", json={"workflow": template}, headers=accounts.alice)
    assert r.status_code == 200, r.text
    workflow_id = r.json()["workflow_id"]
    r = httpx.put(
        f"{saas_web.url}/api/v1/workflows/i/{workflow_id}/thumbnail",
        files={"image": ("thumb.png", _png((0, 90, 0), 64), "image/png")},
        headers=accounts.alice,
        timeout=60,
    )
    assert r.status_code == 200, r.text

    r = httpx.get(f"{saas_web.url}/api/v1/workflows/i/{workflow_id}/thumbnail", timeout=30)
    assert r.status_code == 200
    assert r.content == bucket.stored(kinds.WORKFLOW_THUMBNAIL, workflow_id)
    assert r.headers["content-disposition"] == f'inline; filename="{workflow_id}.png"'
    missing = httpx.get(f"{saas_web.url}/api/v1/workflows/i/{uuid.uuid4()}/thumbnail", timeout=30)
    assert missing.status_code == 404


def test_model_images_are_shared_and_unauthenticated(saas_web: InvokeAIWebServer, bucket: Bucket) -> None:
    model_key = uuid.uuid4().hex
    cover = _png((1, 2, 250), 32)
    key = bucket.layout.model_image(model_key)
    bucket.store.put_bytes(key, cover, "image/webp")
    bucket.index.put(key, "system", kinds.MODEL_IMAGE, model_key, len(cover), "image/webp")
    try:
        r = httpx.get(f"{saas_web.url}/api/v2/models/i/{model_key}/image", timeout=30)
        assert r.status_code == 200 and r.content == cover
        assert r.headers["content-type"] == "image/png"
        assert r.headers["content-disposition"] == f'inline; filename="{model_key}.png"'
        missing = httpx.get(f"{saas_web.url}/api/v2/models/i/{uuid.uuid4().hex}/image", timeout=30)
        assert missing.status_code == 404
    finally:
        bucket.store.delete(key)
        bucket.index.forget([key])


# --- bulk download ----------------------------------------------------------------------------------------


def _wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _request_archive(base_url: str, headers: dict[str, str], image_name: str, bucket: Bucket) -> str:
    r = httpx.post(f"{base_url}/api/v1/images/download", json={"image_names": [image_name]}, headers=headers)
    assert r.status_code == 202, r.text
    name = str(r.json()["bulk_download_item_name"])
    _wait_for(lambda: bucket.index.find(kinds.BULK_DOWNLOAD, name) is not None, "the archive")
    return name


def test_bulk_download_streams_to_its_owner_once(
    saas_web: InvokeAIWebServer, accounts: Accounts, alice_image: str, bucket: Bucket
) -> None:
    name = _request_archive(saas_web.url, accounts.alice, alice_image, bucket)
    url = f"{saas_web.url}/api/v1/images/download/{name}"
    assert bucket.row(kinds.BULK_DOWNLOAD, name).object_key.startswith(bucket.layout.prefix + "bulk_downloads/")

    assert httpx.get(url, headers=accounts.bob, timeout=30).status_code == 403
    r = httpx.get(url, headers=accounts.alice, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'inline; filename="{name}"'
    with ZipFile(io.BytesIO(r.content)) as zip_file:
        assert zip_file.namelist() == [f"user/{alice_image}"]
        assert zip_file.read(f"user/{alice_image}") == bucket.stored(kinds.IMAGE, alice_image)

    _wait_for(lambda: bucket.index.find(kinds.BULK_DOWNLOAD, name) is None, "the served archive to be deleted")
    assert httpx.get(url, headers=accounts.alice, timeout=30).status_code == 404


# --- redirect mode and outages (the second server) ---------------------------------------------------------


def test_redirect_mode_sends_the_browser_to_a_presigned_url(
    stack: LocalStack, redirect_web: InvokeAIWebServer, accounts: Accounts, alice_image: str, bucket: Bucket
) -> None:
    url = f"{redirect_web.url}/api/v1/images/i/{alice_image}/full"
    r = httpx.get(url, headers=accounts.alice, timeout=30)
    assert r.status_code == 307 and r.headers["cache-control"] == "no-store"
    location = r.headers["location"]
    assert location.startswith(stack.s3.endpoint_url + "/")  # signed for the public endpoint
    assert "X-Amz-Signature=" in location
    from_s3 = httpx.get(location, timeout=30)
    assert from_s3.status_code == 200 and from_s3.content == bucket.stored(kinds.IMAGE, alice_image)
    assert from_s3.headers["content-type"] == "image/png"

    thumb = httpx.get(f"{redirect_web.url}/api/v1/images/i/{alice_image}/thumbnail", headers=accounts.alice)
    assert thumb.status_code == 307
    assert httpx.get(thumb.headers["location"], timeout=30).content == bucket.stored(kinds.IMAGE_THUMBNAIL, alice_image)

    head = httpx.head(url, headers=accounts.alice, timeout=30)  # never redirected
    assert head.status_code == 200 and "location" not in head.headers
    assert head.headers["content-length"] == str(bucket.row(kinds.IMAGE, alice_image).bytes)

    for suffix in ("full", "thumbnail"):
        refused = httpx.get(f"{redirect_web.url}/api/v1/images/i/{alice_image}/{suffix}", headers=accounts.bob)
        assert refused.status_code == 403 and "location" not in refused.headers
        assert "X-Amz" not in refused.text and alice_image not in refused.text


def test_redirect_mode_redirects_video_and_s3_honours_range(
    redirect_web: InvokeAIWebServer, accounts: Accounts, alice_video: str, bucket: Bucket
) -> None:
    url = f"{redirect_web.url}/api/v1/videos/i/{alice_video}/full"
    r = httpx.get(url, headers={**accounts.alice, "Range": "bytes=0-99"}, timeout=30)
    assert r.status_code == 307
    ranged = httpx.get(r.headers["location"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == bucket.stored(kinds.VIDEO, alice_video)[:100]
    refused = httpx.get(url, headers=accounts.bob, timeout=30)
    assert refused.status_code == 403 and "location" not in refused.headers


def test_object_store_outage_answers_503_without_details(
    saas_web: InvokeAIWebServer, redirect_web: InvokeAIWebServer, accounts: Accounts, alice_image: str, bucket: Bucket
) -> None:
    # A stock route (upload) whose storage failed: stock answers 500 "Failed to create image".
    _assert_unavailable(upload_image(redirect_web.url, accounts.alice, _png((5, 5, 5))))

    # A streamed object (bulk archives always stream): built by the healthy server, fetched from the other.
    name = _request_archive(saas_web.url, accounts.alice, alice_image, bucket)
    _assert_unavailable(httpx.get(f"{redirect_web.url}/api/v1/images/download/{name}", headers=accounts.alice))
    assert bucket.index.find(kinds.BULK_DOWNLOAD, name) is not None  # nothing was lost
    r = httpx.get(f"{saas_web.url}/api/v1/images/download/{name}", headers=accounts.alice, timeout=30)
    assert r.status_code == 200 and r.content[:2] == b"PK"
