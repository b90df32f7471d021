"""Board DTOs: stock's ``BoardService`` on SQLite vs ``SummarizedBoardService`` on PostgreSQL, same DTOs.

The summarized service takes a board's cover and counts from one gallery statement instead of stock's five
look-ups; these tests pin that every field of the DTO (cover image or video, image/asset/video counts, the
record's own fields) is what stock computes, for the cases where the pieces disagree most: starred vs newer,
images vs videos, intermediates, assets, empty boards, a missing board.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from invokeai.app.services.board_image_records.board_image_records_sqlite import SqliteBoardImageRecordStorage
from invokeai.app.services.board_records.board_records_common import BoardChanges, BoardRecordNotFoundException
from invokeai.app.services.board_records.board_records_sqlite import SqliteBoardRecordStorage
from invokeai.app.services.board_video_records.board_video_records_sqlite import SqliteBoardVideoRecordStorage
from invokeai.app.services.boards.boards_common import BoardDTO
from invokeai.app.services.boards.boards_default import BoardService
from invokeai.app.services.gallery.gallery_default import SqliteGalleryService
from invokeai.app.services.image_records.image_records_sqlite import SqliteImageRecordStorage
from invokeai.app.services.urls.urls_default import LocalUrlService
from invokeai.app.services.video_records.video_records_sqlite import SqliteVideoRecordStorage

from invokeai_saas.services.board_image_records.board_image_records_postgres import PostgresBoardImageRecordStorage
from invokeai_saas.services.board_records.board_records_postgres import PostgresBoardRecordStorage
from invokeai_saas.services.board_video_records.board_video_records_postgres import PostgresBoardVideoRecordStorage
from invokeai_saas.services.boards.boards_summarized import SummarizedBoardService
from invokeai_saas.services.gallery.gallery_postgres import PostgresGalleryService
from invokeai_saas.services.image_records.image_records_postgres import PostgresImageRecordStorage
from invokeai_saas.services.video_records.video_records_postgres import PostgresVideoRecordStorage
from tests.services.conftest import Backend
from tests.services.helpers_gallery import Media, add_board, add_media, add_to_board, utc
from tests.support.sql_counter import count_statements

T = utc(2024, 3, 10, 12, 0, 0)


def build_service(backend: Backend) -> BoardService:
    services: Any
    if backend.is_postgres:
        engine = backend.engine
        services = SimpleNamespace(
            board_records=PostgresBoardRecordStorage(engine),
            image_records=PostgresImageRecordStorage(engine),
            video_records=PostgresVideoRecordStorage(engine),
            board_image_records=PostgresBoardImageRecordStorage(engine),
            board_video_records=PostgresBoardVideoRecordStorage(engine),
            gallery=PostgresGalleryService(engine),
        )
        service: BoardService = SummarizedBoardService()
    else:
        db = backend.db
        services = SimpleNamespace(
            board_records=SqliteBoardRecordStorage(db),
            image_records=SqliteImageRecordStorage(db),
            video_records=SqliteVideoRecordStorage(db),
            board_image_records=SqliteBoardImageRecordStorage(db),
            board_video_records=SqliteBoardVideoRecordStorage(db),
            gallery=SqliteGalleryService(db),
        )
        service = BoardService()
    services.urls = LocalUrlService()
    invoker = SimpleNamespace(services=services)
    for name in ("board_records", "image_records", "video_records", "board_image_records", "gallery"):
        starter = getattr(getattr(services, name), "start", None)
        if starter is not None:
            starter(invoker)
    service.start(invoker)  # type: ignore[arg-type]
    return service


@pytest.fixture()
def service(backend: Backend) -> BoardService:
    return build_service(backend)


def media_fields(dto: BoardDTO) -> tuple[Any, ...]:
    return (dto.board_id, dto.cover_image_name, dto.cover_video_name, dto.image_count, dto.asset_count, dto.video_count)


def seed(backend: Backend) -> None:
    for board in ("starred-image", "newer-video", "assets", "intermediates", "video-only", "empty"):
        add_board(backend, board)
    rows = {
        "starred-image": [
            Media("image", "a-starred.png", T, starred=True),
            Media("image", "a-newer.png", T + timedelta(seconds=5)),
            Media("video", "a-clip.mp4", T + timedelta(seconds=9)),
        ],
        "newer-video": [
            Media("image", "b-old.png", T),
            Media("video", "b-new.mp4", T + timedelta(seconds=3)),
            Media("image", "b-asset.png", T + timedelta(seconds=1), category="control"),
        ],
        "assets": [
            Media("image", "c-user.png", T + timedelta(seconds=2), category="user"),
            Media("image", "c-mask.png", T + timedelta(seconds=1), category="mask"),
            Media("image", "c-general.png", T, starred=False),
        ],
        "intermediates": [
            Media("image", "d-hidden.png", T + timedelta(seconds=8), is_intermediate=True, starred=True),
            Media("video", "d-hidden.mp4", T + timedelta(seconds=9), is_intermediate=True),
            Media("image", "d-shown.png", T),
        ],
        "video-only": [
            Media("video", "e-one.mp4", T),
            Media("video", "e-starred.mp4", T - timedelta(seconds=4), starred=True),
        ],
    }
    for board, items in rows.items():
        for item in items:
            add_to_board(backend, board, add_media(backend, item))


def test_get_dto_matches_stock(service: BoardService, backend: Backend) -> None:
    seed(backend)
    dtos = {board: media_fields(service.get_dto(board)) for board in ("starred-image", "newer-video", "assets")}
    assert dtos == {
        "starred-image": ("starred-image", "a-starred.png", None, 2, 0, 1),
        "newer-video": ("newer-video", None, "b-new.mp4", 1, 1, 1),
        "assets": ("assets", "c-user.png", None, 1, 2, 0),
    }
    assert media_fields(service.get_dto("intermediates")) == ("intermediates", "d-shown.png", None, 1, 0, 0)
    assert media_fields(service.get_dto("video-only")) == ("video-only", None, "e-starred.mp4", 0, 0, 2)
    assert media_fields(service.get_dto("empty")) == ("empty", None, None, 0, 0, 0)
    whole = service.get_dto("starred-image")
    assert (whole.board_name, whole.user_id, whole.archived, whole.board_visibility.value) == (
        "starred-image",
        "system",
        False,
        "private",
    )


def test_get_dto_and_update_of_missing_board_raise_stock_error(service: BoardService) -> None:
    with pytest.raises(BoardRecordNotFoundException):
        service.get_dto("no-such-board")
    with pytest.raises(BoardRecordNotFoundException):
        service.update("no-such-board", BoardChanges(board_name="x"))


def test_update_returns_the_summarized_dto(service: BoardService, backend: Backend) -> None:
    seed(backend)
    dto = service.update("newer-video", BoardChanges(board_name="renamed", archived=True))
    assert (dto.board_name, dto.archived) == ("renamed", True)
    assert media_fields(dto) == ("newer-video", None, "b-new.mp4", 1, 1, 1)
    assert service.get_dto("newer-video") == dto


@pytest.mark.postgres_only
def test_get_dto_is_two_statements(service: BoardService, backend: Backend) -> None:
    seed(backend)
    with count_statements(backend.engine) as log:
        service.get_dto("starred-image")
    assert log.count == 2
