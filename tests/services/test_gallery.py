"""Gallery (mixed image + video stream): stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from invokeai.app.services.gallery.gallery_base import GalleryServiceABC
from invokeai.app.services.gallery.gallery_common import (
    BoardMediaSummary,
    GalleryItem,
    GalleryItemKind,
    GalleryItemRef,
)
from invokeai.app.services.gallery.gallery_default import SqliteGalleryService
from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.app.services.urls.urls_default import LocalUrlService
from invokeai.app.services.virtual_boards.virtual_boards_common import VirtualSubBoardDTO
from sqlalchemy import create_engine

from invokeai_saas.db.convert import stock_ms
from invokeai_saas.services.gallery.gallery_postgres import PostgresGalleryService
from tests.services.conftest import Backend
from tests.services.helpers_gallery import Media, add_board, add_media, add_to_board, utc
from tests.support.sql_counter import count_statements

URLS = LocalUrlService()
T = utc(2024, 3, 10, 12, 0, 0)
ASC = SQLiteDirection.Ascending


def build_service(backend: Backend) -> GalleryServiceABC:
    service: GalleryServiceABC
    if backend.is_postgres:
        service = PostgresGalleryService(backend.engine)
    else:
        service = SqliteGalleryService(backend.db)
    service.start(SimpleNamespace(services=SimpleNamespace(urls=URLS)))  # type: ignore[arg-type]
    return service


@pytest.fixture()
def service(backend: Backend) -> GalleryServiceABC:
    return build_service(backend)


@dataclass
class World:
    media: dict[str, Media]
    boards: dict[str, str]  # media name -> board id

    def item(self, name: str) -> GalleryItem:
        """The DTO stock hands out for a seeded row."""
        m = self.media[name]
        is_image = m.kind == "image"
        get_url = URLS.get_image_url if is_image else URLS.get_video_url
        return GalleryItem(
            kind=GalleryItemKind(m.kind),
            name=m.name,
            full_url=get_url(m.name),
            thumbnail_url=get_url(m.name, thumbnail=True),
            width=m.width,
            height=m.height,
            category=ImageCategory(m.category),
            starred=m.starred,
            is_intermediate=m.is_intermediate,
            board_id=self.boards.get(name),
            created_at=stock_ms(m.created_at),
            duration=None if is_image else m.duration,
            fps=None if is_image else m.fps,
        )

    def items(self, names: list[str]) -> list[GalleryItem]:
        return [self.item(name) for name in names]


@pytest.fixture()
def world(backend: Backend) -> World:
    def at(seconds: int, micros: int = 0) -> datetime:
        return T + timedelta(seconds=seconds, microseconds=micros)

    seeds = [
        Media("image", "a-general.png", at(1), user_id="alice", metadata='{"prompt": "A Red Fox"}'),
        Media("image", "a-mask.png", at(2), user_id="alice", category="mask", metadata="50% off_sale"),
        Media("image", "a-interm.png", at(3), user_id="alice", is_intermediate=True, metadata=r"path C:\tmp"),
        Media("image", "a-starred.png", at(4), user_id="alice", starred=True, origin="external", width=512),
        Media("image", "b-general.png", at(5), user_id="bob", metadata="Élan vital"),
        Media("video", "a-clip.mp4", at(6), user_id="alice", duration=2.5, fps=30.0),
        Media("video", "b-clip.mp4", at(7), user_id="bob", starred=True, fps=None, height=720),
        # Three items in one millisecond (12:00:08.000): stock's text ties them, so kind then name decide.
        # The microseconds PostgreSQL keeps deliberately disagree with that order.
        Media("image", "tie-b.png", at(8, 900), user_id="alice"),
        Media("image", "tie-A.png", at(8, 500), user_id="alice"),
        Media("video", "tie-a.mp4", at(8, 100), user_id="alice"),
        # Either side of a UTC midnight.
        Media("image", "late.png", utc(2024, 3, 9, 23, 59, 59, 999500), user_id="bob"),
        Media("video", "early.mp4", utc(2024, 3, 10, 0, 0, 0), user_id="alice"),
    ]
    media = {m.name: add_media(backend, m) for m in seeds}
    add_board(backend, "board-a", user_id="alice")
    add_board(backend, "board-b", user_id="bob")
    boards = {"a-general.png": "board-a", "a-clip.mp4": "board-a", "b-general.png": "board-b"}
    for name, board_id in boards.items():
        add_to_board(backend, board_id, media[name])
    return World(media, boards)


# Everything, newest first, starred first (stock's default order).
DEFAULT_ORDER = [
    "b-clip.mp4",
    "a-starred.png",
    "tie-a.mp4",
    "tie-b.png",
    "tie-A.png",
    "a-clip.mp4",
    "b-general.png",
    "a-interm.png",
    "a-mask.png",
    "a-general.png",
    "early.mp4",
    "late.png",
]
# Oldest first, starred not hoisted: the exact mirror, tie-breakers included.
ASCENDING_ORDER = [
    "late.png",
    "early.mp4",
    "a-general.png",
    "a-mask.png",
    "a-interm.png",
    "a-starred.png",
    "b-general.png",
    "a-clip.mp4",
    "b-clip.mp4",
    "tie-A.png",
    "tie-b.png",
    "tie-a.mp4",
]


def names(service: GalleryServiceABC, **kwargs: object) -> list[str]:
    return service.get_item_names(**kwargs).item_names  # type: ignore[arg-type]


# --- list_items ---------------------------------------------------------------------------------------------


def test_list_items_default_order_whole_dtos(service: GalleryServiceABC, world: World) -> None:
    page = service.list_items(limit=100, is_admin=True)
    assert page.total == 12 and page.offset == 0 and page.limit == 100
    assert page.items == world.items(DEFAULT_ORDER)


def test_list_items_ascending_without_starred_first(service: GalleryServiceABC, world: World) -> None:
    page = service.list_items(limit=100, starred_first=False, order_dir=ASC)
    assert page.items == world.items(ASCENDING_ORDER)
    descending = service.list_items(limit=100, starred_first=False)
    assert [i.name for i in descending.items] == list(reversed(ASCENDING_ORDER))


def test_list_items_pagination(service: GalleryServiceABC, world: World) -> None:
    pages = [service.list_items(offset=offset, limit=5) for offset in (0, 5, 10)]
    assert [[i.name for i in p.items] for p in pages] == [DEFAULT_ORDER[0:5], DEFAULT_ORDER[5:10], DEFAULT_ORDER[10:]]
    assert [(p.offset, p.limit, p.total) for p in pages] == [(0, 5, 12), (5, 5, 12), (10, 5, 12)]
    past_the_end = service.list_items(offset=50, limit=5)
    assert past_the_end.items == [] and past_the_end.total == 12
    empty_page = service.list_items(offset=0, limit=0)
    assert empty_page.items == [] and empty_page.total == 12


def test_list_items_out_of_range_paging_follows_sqlite(service: GalleryServiceABC, world: World) -> None:
    """Routes clamp these, but the service itself follows SQLite: LIMIT -1 is unlimited, OFFSET -3 is 0."""
    page = service.list_items(offset=-3, limit=-1)
    assert [i.name for i in page.items] == DEFAULT_ORDER
    assert (page.offset, page.limit, page.total) == (-3, -1, 12)


def test_list_items_on_empty_database(service: GalleryServiceABC) -> None:
    page = service.list_items()
    assert (page.items, page.total, page.offset, page.limit) == ([], 0, 0, 10)


def test_list_items_per_user_visibility(service: GalleryServiceABC, world: World) -> None:
    alice = [n for n in DEFAULT_ORDER if world.media[n].user_id == "alice"]
    bob = [n for n in DEFAULT_ORDER if world.media[n].user_id == "bob"]
    own = service.list_items(limit=100, user_id="alice")
    assert own.items == world.items(alice) and own.total == len(alice)
    assert [i.name for i in service.list_items(limit=100, user_id="bob").items] == bob
    # Admins and unscoped callers see everyone's media.
    assert [i.name for i in service.list_items(limit=100, user_id="alice", is_admin=True).items] == DEFAULT_ORDER
    assert [i.name for i in service.list_items(limit=100).items] == DEFAULT_ORDER
    assert service.list_items(user_id="nobody").total == 0


def test_list_items_filters(service: GalleryServiceABC, world: World) -> None:
    def listed(**kwargs: object) -> list[str]:
        page = service.list_items(limit=100, **kwargs)  # type: ignore[arg-type]
        assert page.total == len(page.items)
        return [i.name for i in page.items]

    assert listed(origin=ResourceOrigin.EXTERNAL) == ["a-starred.png"]
    internal = listed(origin=ResourceOrigin.INTERNAL)
    assert internal == [n for n in DEFAULT_ORDER if n != "a-starred.png"]
    assert listed(categories=[ImageCategory.MASK]) == ["a-mask.png"]
    assert listed(categories=[ImageCategory.MASK, ImageCategory.MASK, ImageCategory.CONTROL]) == ["a-mask.png"]
    assert listed(categories=[ImageCategory.GENERAL]) == [n for n in DEFAULT_ORDER if n != "a-mask.png"]
    assert listed(categories=[]) == []
    assert listed(is_intermediate=True) == ["a-interm.png"]
    assert listed(is_intermediate=False) == [n for n in DEFAULT_ORDER if n != "a-interm.png"]
    assert listed(categories=[ImageCategory.GENERAL], is_intermediate=False, user_id="bob") == [
        "b-clip.mp4",
        "b-general.png",
        "late.png",
    ]


def test_list_items_search_follows_sqlite_like(service: GalleryServiceABC, world: World) -> None:
    def found(term: str) -> list[str]:
        return [i.name for i in service.list_items(limit=100, search_term=term).items]

    assert found("red fox") == ["a-general.png"]
    assert found("RED FOX") == ["a-general.png"]  # the term is lower-cased, ASCII folds on both sides
    assert found("50%") == ["a-mask.png"]
    assert found("off%sale") == ["a-mask.png"]  # '%' in the term is a wildcard, as in stock
    assert found("o_f") == ["a-mask.png"]  # and so is '_'
    assert found(r"c:\tmp") == ["a-interm.png"]  # a backslash is literal: SQLite's LIKE has no escape character
    assert found("lan vital") == ["b-general.png"]
    assert found("ÉLAN") == []  # SQLite folds ASCII only: "élan" does not match "Élan"
    # created_at is matched as stock's UTC text.
    assert found("12:00:03.000") == ["a-interm.png"]
    assert found("2024-03-09 23:59:59.999") == ["late.png"]
    assert found("12:00:08.") == ["tie-a.mp4", "tie-b.png", "tie-A.png"]
    assert found("") == DEFAULT_ORDER  # an empty term is no filter
    assert service.list_items(search_term="fox", user_id="bob").items == []


def test_list_items_board_filters(service: GalleryServiceABC, world: World) -> None:
    board_a = service.list_items(limit=100, board_id="board-a")
    assert board_a.items == world.items(["a-clip.mp4", "a-general.png"]) and board_a.total == 2
    # An explicit board is not scoped by owner (the router checks board access), as in stock.
    assert [i.name for i in service.list_items(board_id="board-a", user_id="bob").items] == [
        "a-clip.mp4",
        "a-general.png",
    ]
    assert service.list_items(board_id="no-such-board").total == 0

    unboarded = [n for n in DEFAULT_ORDER if n not in world.boards]
    none_admin = service.list_items(limit=100, board_id="none", is_admin=True)
    assert none_admin.items == world.items(unboarded) and none_admin.total == len(unboarded)
    none_alice = service.list_items(limit=100, board_id="none", user_id="alice")
    assert [i.name for i in none_alice.items] == [n for n in unboarded if world.media[n].user_id == "alice"]
    combined = service.list_items(board_id="board-a", categories=[ImageCategory.GENERAL], search_term="fox")
    assert [i.name for i in combined.items] == ["a-general.png"]


# --- list_item_names / get_item_names ---------------------------------------------------------------------


def test_get_item_names_orders_and_counts(service: GalleryServiceABC, world: World) -> None:
    result = service.get_item_names(is_admin=True)
    assert result.item_names == DEFAULT_ORDER
    assert (result.starred_count, result.total_count) == (2, 12)
    unstarred = service.get_item_names(starred_first=False, order_dir=ASC)
    assert unstarred.item_names == ASCENDING_ORDER
    assert (unstarred.starred_count, unstarred.total_count) == (0, 12)  # only counted when starred first
    assert names(service, user_id="bob") == ["b-clip.mp4", "b-general.png", "late.png"]
    assert service.get_item_names(user_id="bob").starred_count == 1
    assert names(service, board_id="board-a") == ["a-clip.mp4", "a-general.png"]
    assert names(service, board_id="none", user_id="bob") == ["b-clip.mp4", "late.png"]
    assert names(service, categories=[ImageCategory.MASK], search_term="sale") == ["a-mask.png"]
    assert names(service, origin=ResourceOrigin.EXTERNAL, is_intermediate=False) == ["a-starred.png"]
    assert names(service, is_intermediate=True) == ["a-interm.png"]
    assert names(service, search_term="12:00:08") == ["tie-a.mp4", "tie-b.png", "tie-A.png"]


def test_get_item_names_created_date(service: GalleryServiceABC, world: World) -> None:
    assert names(service, created_date="2024-03-09") == ["late.png"]
    assert names(service, created_date="2024-03-10") == DEFAULT_ORDER[:-1]
    assert names(service, created_date="2024-03-10", user_id="bob") == ["b-clip.mp4", "b-general.png"]
    assert names(service, created_date="2024-03-11") == []
    # DATE() only ever equals a well-formed, valid day: anything else matches nothing (and raises nothing).
    for odd in ("2024-3-10", "2024-03-10 12:00", "2024-02-30", "20240310", "nonsense", ""):
        assert names(service, created_date=odd) == [], odd
    assert names(service, created_date="9999-12-31") == []  # the last representable day has no "next day"


def test_list_item_names_matches_get_item_names(service: GalleryServiceABC, world: World) -> None:
    result = service.list_item_names(is_admin=True)
    assert result.items == [GalleryItemRef(kind=GalleryItemKind(world.media[n].kind), name=n) for n in DEFAULT_ORDER]
    assert (result.starred_count, result.total_count) == (2, 12)
    filtered = service.list_item_names(
        starred_first=False, order_dir=ASC, user_id="alice", created_date="2024-03-10", is_intermediate=False
    )
    expected = [n for n in ASCENDING_ORDER if world.media[n].user_id == "alice" and n != "a-interm.png"]
    assert [r.name for r in filtered.items] == expected
    assert (filtered.starred_count, filtered.total_count) == (0, len(expected))
    assert service.list_item_names(board_id="board-b").items == [
        GalleryItemRef(kind=GalleryItemKind.IMAGE, name="b-general.png")
    ]


# --- get_dates ----------------------------------------------------------------------------------------------


def test_get_dates(service: GalleryServiceABC, world: World) -> None:
    assert service.get_dates(is_admin=True) == [
        VirtualSubBoardDTO(
            virtual_board_id="by_date:2024-03-10",
            board_name="2024-03-10",
            date="2024-03-10",
            image_count=5,  # general images; the intermediate one is left out
            asset_count=1,
            video_count=4,
            # Newest: the 12:00:08.000 tie, broken by kind DESC — the video, whatever the microseconds say.
            cover_image_name=None,
            cover_video_name="tie-a.mp4",
        ),
        VirtualSubBoardDTO(
            virtual_board_id="by_date:2024-03-09",
            board_name="2024-03-09",
            date="2024-03-09",
            image_count=1,
            asset_count=0,
            video_count=0,
            cover_image_name="late.png",
            cover_video_name=None,
        ),
    ]
    assert service.get_dates(user_id="bob") == [
        VirtualSubBoardDTO(
            virtual_board_id="by_date:2024-03-10",
            board_name="2024-03-10",
            date="2024-03-10",
            image_count=1,
            asset_count=0,
            video_count=1,
            cover_image_name=None,
            cover_video_name="b-clip.mp4",
        ),
        VirtualSubBoardDTO(
            virtual_board_id="by_date:2024-03-09",
            board_name="2024-03-09",
            date="2024-03-09",
            image_count=1,
            asset_count=0,
            video_count=0,
            cover_image_name="late.png",
            cover_video_name=None,
        ),
    ]
    assert service.get_dates(user_id="alice", is_admin=True) == service.get_dates()
    assert service.get_dates(user_id="nobody") == []


def test_get_dates_cover_tie_between_images_uses_name(service: GalleryServiceABC, backend: Backend) -> None:
    moment = utc(2025, 1, 2, 3, 4, 5, 6000)
    add_media(backend, Media("image", "Zed.png", moment.replace(microsecond=6900)))
    add_media(backend, Media("image", "abc.png", moment.replace(microsecond=6100)))
    add_media(backend, Media("image", "Mask.png", moment, category="mask"))
    (day,) = service.get_dates()
    # Byte order: "abc" > "Zed" > "Mask" (lower case sorts after upper case), so "abc.png" wins name DESC.
    assert (day.cover_image_name, day.cover_video_name, day.image_count, day.asset_count) == ("abc.png", None, 2, 1)


# --- get_board_media_summaries ------------------------------------------------------------------------------


def test_get_board_media_summaries(service: GalleryServiceABC, backend: Backend) -> None:
    add_board(backend, "mixed")
    add_board(backend, "images-only")
    add_board(backend, "empty")
    seeds = {
        "old-starred.png": Media("image", "old-starred.png", T, starred=True),
        "newer.png": Media("image", "newer.png", T + timedelta(seconds=1)),
        "asset.png": Media("image", "asset.png", T + timedelta(seconds=2), category="control"),
        "hidden.png": Media("image", "hidden.png", T + timedelta(seconds=3), is_intermediate=True, starred=True),
        "clip.mp4": Media("video", "clip.mp4", T + timedelta(seconds=4)),
        "hidden.mp4": Media("video", "hidden.mp4", T + timedelta(seconds=5), is_intermediate=True),
        "only.png": Media("image", "only.png", T + timedelta(seconds=6)),
        "only-video.mp4": Media("video", "only-video.mp4", T + timedelta(seconds=7), starred=True),
        "only-asset.png": Media("image", "only-asset.png", T + timedelta(seconds=8), category="user"),
    }
    for m in seeds.values():
        add_media(backend, m)
    for name in ("old-starred.png", "newer.png", "asset.png", "hidden.png", "clip.mp4", "hidden.mp4"):
        add_to_board(backend, "mixed", seeds[name])
    for name in ("only.png", "only-asset.png"):
        add_to_board(backend, "images-only", seeds[name])
    add_media(backend, Media("video", "unboarded.mp4", T + timedelta(seconds=9)))

    summaries = service.get_board_media_summaries(["mixed", "images-only", "empty", "no-such-board", "mixed"])
    assert summaries == {
        # Starred beats newer; intermediates neither count nor cover.
        "mixed": BoardMediaSummary(
            cover_image_name="old-starred.png", cover_video_name=None, image_count=2, video_count=1, asset_count=1
        ),
        "images-only": BoardMediaSummary(
            cover_image_name="only-asset.png", cover_video_name=None, image_count=1, video_count=0, asset_count=1
        ),
        "empty": BoardMediaSummary(),
        "no-such-board": BoardMediaSummary(),
    }
    assert service.get_board_media_summaries([]) == {}
    add_to_board(backend, "empty", seeds["only-video.mp4"])
    assert service.get_board_media_summaries(["empty"]) == {
        "empty": BoardMediaSummary(cover_video_name="only-video.mp4", video_count=1)
    }


def test_board_summary_cover_tie_within_one_millisecond(service: GalleryServiceABC, backend: Backend) -> None:
    add_board(backend, "b")
    moment = utc(2025, 5, 6, 7, 8, 9, 10000)
    for m in (
        Media("image", "img.png", moment.replace(microsecond=10900)),
        Media("video", "vid.mp4", moment.replace(microsecond=10100)),
    ):
        add_to_board(backend, "b", add_media(backend, m))
    assert service.get_board_media_summaries(["b"])["b"] == BoardMediaSummary(
        cover_video_name="vid.mp4", image_count=1, video_count=1
    )


# --- PostgreSQL only ----------------------------------------------------------------------------------------


@pytest.mark.postgres_only
def test_statement_counts_are_bounded(service: GalleryServiceABC, world: World, backend: Backend) -> None:
    for call in (
        lambda size: service.list_items(limit=size),
        lambda size: service.list_items(limit=size, offset=100),  # empty page: the total still comes along
        lambda size: service.get_item_names(categories=[ImageCategory.GENERAL] * size),
        lambda size: service.list_item_names(board_id="none", search_term="a" * size),
        lambda size: service.get_dates(),
        lambda size: service.get_board_media_summaries([f"board-{i}" for i in range(size)] + ["board-a"]),
    ):
        counts = []
        for size in (2, 50):
            with count_statements(backend.engine) as log:
                call(size)
            counts.append(log.count)
        assert counts == [1, 1]


@pytest.fixture()
def far_east_engine(backend: Backend) -> Iterator[object]:
    """The same database through sessions whose TimeZone is UTC+14, to prove nothing depends on it."""
    engine = create_engine(backend.engine.url, connect_args={"options": "-c TimeZone=Pacific/Kiritimati"})
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.mark.postgres_only
def test_results_do_not_depend_on_session_time_zone(
    service: GalleryServiceABC, world: World, backend: Backend, far_east_engine: object
) -> None:
    far_east = PostgresGalleryService(far_east_engine)  # type: ignore[arg-type]
    far_east.start(SimpleNamespace(services=SimpleNamespace(urls=URLS)))  # type: ignore[arg-type]
    assert far_east.get_dates() == service.get_dates()
    assert [d.date for d in far_east.get_dates()] == ["2024-03-10", "2024-03-09"]
    assert far_east.get_item_names(created_date="2024-03-09").item_names == ["late.png"]
    assert far_east.list_items(limit=100).items == world.items(DEFAULT_ORDER)
    assert [i.name for i in far_east.list_items(search_term="2024-03-09 23:59").items] == ["late.png"]
