"""BoardImageRecordStorage: stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from invokeai.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from invokeai.app.services.board_image_records.board_image_records_sqlite import SqliteBoardImageRecordStorage
from invokeai.app.services.image_records.image_records_common import (
    ImageCategory,
    ImageRecord,
    ResourceOrigin,
)
from invokeai.app.services.shared.pagination import OffsetPaginatedResults

from invokeai_saas.services.board_image_records.board_image_records_postgres import PostgresBoardImageRecordStorage
from tests.services.conftest import Backend
from tests.services.helpers_boards import FK_ERRORS, add_board, add_image, execute, scalar, shape
from tests.support.sql_counter import count_statements

Service = SqliteBoardImageRecordStorage | PostgresBoardImageRecordStorage


@pytest.fixture()
def service(backend: Backend) -> Service:
    if backend.is_postgres:
        return PostgresBoardImageRecordStorage(backend.engine)
    return SqliteBoardImageRecordStorage(backend.db)


@pytest.fixture()
def boards(backend: Backend) -> tuple[str, str]:
    return add_board(backend, "board-a", "alice"), add_board(backend, "board-b", "bob")


def add_spaced(service: BoardImageRecordStorageBase, board_id: str, image_name: str) -> None:
    """Add with a pause first, so memberships get distinct millisecond timestamps (stock orders by them)."""
    time.sleep(0.003)
    service.add_image_to_board(board_id, image_name)


# --- add / move / get_board_for_image ----------------------------------------------------------------------


def test_add_move_and_get_board(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    a, b = boards
    add_image(backend, "one.png")
    add_image(backend, "two.png")
    assert service.get_board_for_image("one.png") is None
    service.add_image_to_board(a, "one.png")
    assert service.get_board_for_image("one.png") == a
    assert service.get_board_for_image("two.png") is None
    # An image is on one board at most: adding it elsewhere moves it.
    service.add_image_to_board(b, "one.png")
    assert service.get_board_for_image("one.png") == b
    service.add_image_to_board(b, "one.png")  # again: no error, no duplicate
    assert scalar(backend, "SELECT COUNT(*) FROM board_images") == 1
    assert service.get_board_for_image("never-stored.png") is None


def test_add_refuses_unknown_board_or_image(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    a, _ = boards
    add_image(backend, "one.png")
    with pytest.raises(FK_ERRORS):
        service.add_image_to_board("no-such-board", "one.png")
    with pytest.raises(FK_ERRORS):
        service.add_image_to_board(a, "no-such-image.png")
    assert scalar(backend, "SELECT COUNT(*) FROM board_images") == 0


def test_memberships_follow_deletes(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    a, b = boards
    add_image(backend, "one.png")
    add_image(backend, "two.png")
    service.add_image_to_board(a, "one.png")
    service.add_image_to_board(b, "two.png")
    execute(backend, "DELETE FROM images WHERE image_name = 'one.png'")
    execute(backend, "DELETE FROM boards WHERE board_id = :b", {"b": b})
    assert service.get_board_for_image("one.png") is None
    assert service.get_board_for_image("two.png") is None
    assert service.get_all_board_image_names_for_board("none", None, None) == ["two.png"]


@pytest.mark.postgres_only
def test_concurrent_adds_leave_one_membership(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    """Stock serialises writers with a process-wide lock; here concurrent adds of one image (from any number
    of processes) must still leave exactly one membership, on one of the boards."""
    add_image(backend, "contested.png")
    targets = [boards[n % 2] for n in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda board_id: service.add_image_to_board(board_id, "contested.png"), targets))
    assert scalar(backend, "SELECT COUNT(*) FROM board_images") == 1
    assert service.get_board_for_image("contested.png") in boards


# --- remove -----------------------------------------------------------------------------------------------


def test_remove_is_scoped_to_the_board(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    a, b = boards
    add_image(backend, "one.png")
    add_image(backend, "two.png")
    service.add_image_to_board(a, "one.png")
    service.add_image_to_board(a, "two.png")
    # The image is not on ``b``: nothing removed, and it stays on ``a``.
    assert service.remove_image_from_board("one.png", b) == 0
    assert service.get_board_for_image("one.png") == a
    assert service.remove_image_from_board("one.png", a) == 1
    assert service.get_board_for_image("one.png") is None
    assert service.get_board_for_image("two.png") == a
    assert service.remove_image_from_board("one.png", a) == 0
    assert service.remove_image_from_board("never-stored.png", a) == 0


# --- get_all_board_image_names_for_board --------------------------------------------------------------------


@pytest.fixture()
def gallery(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    a, b = boards
    add_image(backend, "a-general-alice.png", user_id="alice")
    add_image(backend, "a-general-bob.png", user_id="bob")
    add_image(backend, "a-mask-alice.png", category="mask", user_id="alice")
    add_image(backend, "a-control-bob.png", category="control", user_id="bob")
    add_image(backend, "a-user-alice.png", category="user", user_id="alice")
    add_image(backend, "a-other-alice.png", category="other", user_id="alice")
    add_image(backend, "a-intermediate-alice.png", is_intermediate=True, user_id="alice")
    add_image(backend, "a-intermediate-mask-bob.png", category="mask", is_intermediate=True, user_id="bob")
    add_image(backend, "b-general-bob.png", user_id="bob")
    add_image(backend, "b-mask-alice.png", category="mask", user_id="alice")
    add_image(backend, "z-loose-general-alice.png", user_id="alice")
    add_image(backend, "m-loose-mask-bob.png", category="mask", user_id="bob")
    add_image(backend, "c-loose-intermediate-system.png", is_intermediate=True)
    for name in (
        "a-other-alice.png",
        "a-general-alice.png",
        "a-intermediate-mask-bob.png",
        "a-user-alice.png",
        "a-mask-alice.png",
        "a-control-bob.png",
        "a-general-bob.png",
        "a-intermediate-alice.png",
    ):
        add_spaced(service, a, name)
    for name in ("b-mask-alice.png", "b-general-bob.png"):
        add_spaced(service, b, name)


ON_A = {
    "a-general-alice.png",
    "a-general-bob.png",
    "a-mask-alice.png",
    "a-control-bob.png",
    "a-user-alice.png",
    "a-other-alice.png",
    "a-intermediate-alice.png",
    "a-intermediate-mask-bob.png",
}
LOOSE = {"z-loose-general-alice.png", "m-loose-mask-bob.png", "c-loose-intermediate-system.png"}
C = ImageCategory


# (board, categories, is_intermediate, user_id) -> expected names
NAME_FILTER_CASES: list[tuple[str, list[ImageCategory] | None, bool | None, str | None, set[str]]] = [
    ("board-a", None, None, None, ON_A),
    ("board-b", None, None, None, {"b-mask-alice.png", "b-general-bob.png"}),
    ("none", None, None, None, LOOSE),
    ("no-such-board", None, None, None, set()),
    ("board-a", [C.GENERAL], None, None, {"a-general-alice.png", "a-general-bob.png", "a-intermediate-alice.png"}),
    (
        "board-a",
        [C.MASK, C.CONTROL, C.MASK],
        None,
        None,
        {"a-mask-alice.png", "a-control-bob.png", "a-intermediate-mask-bob.png"},
    ),
    ("board-a", [], None, None, set()),
    ("board-a", None, True, None, {"a-intermediate-alice.png", "a-intermediate-mask-bob.png"}),
    ("board-a", None, False, None, ON_A - {"a-intermediate-alice.png", "a-intermediate-mask-bob.png"}),
    (
        "board-a",
        None,
        None,
        "alice",
        {
            "a-general-alice.png",
            "a-mask-alice.png",
            "a-user-alice.png",
            "a-other-alice.png",
            "a-intermediate-alice.png",
        },
    ),
    ("board-a", [C.GENERAL], False, "alice", {"a-general-alice.png"}),
    ("board-a", [C.USER, C.OTHER, C.MASK], False, "bob", set()),
    ("none", [C.MASK], None, None, {"m-loose-mask-bob.png"}),
    ("none", None, False, None, {"z-loose-general-alice.png", "m-loose-mask-bob.png"}),
    ("none", None, True, "system", {"c-loose-intermediate-system.png"}),
    ("none", None, None, "alice", {"z-loose-general-alice.png"}),
    ("none", [], None, None, set()),
]


def test_image_names_filters(service: Service, gallery: None) -> None:
    """Every filter combination against one gallery (one database per backend keeps the suite quick)."""
    for board, categories, is_intermediate, user_id, expected in NAME_FILTER_CASES:
        result = service.get_all_board_image_names_for_board(board, categories, is_intermediate, user_id)
        case = (board, categories, is_intermediate, user_id)
        # Stock has no ORDER BY: the order is SQLite's plan's, so only the set (and no duplicates) is compared.
        assert len(result) == len(set(result)), case
        assert set(result) == expected, case


def test_image_names_order(service: Service, gallery: None) -> None:
    """Unfiltered, stock's plan returns a board's images in the order they joined it and loose images by
    name; PostgreSQL always does."""
    assert service.get_all_board_image_names_for_board("board-a", None, None) == [
        "a-other-alice.png",
        "a-general-alice.png",
        "a-intermediate-mask-bob.png",
        "a-user-alice.png",
        "a-mask-alice.png",
        "a-control-bob.png",
        "a-general-bob.png",
        "a-intermediate-alice.png",
    ]
    assert service.get_all_board_image_names_for_board("none", None, None) == sorted(LOOSE)


# --- counts -----------------------------------------------------------------------------------------------


def test_counts(service: Service, gallery: None) -> None:
    # Images: non-intermediate "general"; assets: non-intermediate control/mask/user/other.
    assert service.get_image_count_for_board("board-a") == 2
    assert service.get_asset_count_for_board("board-a") == 4
    assert service.get_image_count_for_board("board-b") == 1
    assert service.get_asset_count_for_board("board-b") == 1
    assert service.get_image_count_for_board("no-such-board") == 0
    assert service.get_asset_count_for_board("no-such-board") == 0
    # "none" is not a board here: loose images are counted by nobody.
    assert service.get_image_count_for_board("none") == 0


def test_counts_follow_moves(backend: Backend, service: Service, gallery: None, boards: tuple[str, str]) -> None:
    a, b = boards
    service.add_image_to_board(b, "a-general-alice.png")
    service.add_image_to_board(b, "a-mask-alice.png")
    assert (service.get_image_count_for_board(a), service.get_asset_count_for_board(a)) == (1, 3)
    assert (service.get_image_count_for_board(b), service.get_asset_count_for_board(b)) == (2, 2)
    assert service.remove_image_from_board("b-general-bob.png", b) == 1
    assert service.get_image_count_for_board(b) == 1


# --- get_images_for_board (stock's helper outside the base class) -------------------------------------------


def normal(record: ImageRecord) -> ImageRecord:
    return record.model_copy(update={"created_at": shape(record.created_at), "updated_at": shape(record.updated_at)})


def image_record(name: str, **changes: object) -> ImageRecord:
    values: dict[str, object] = {
        "image_name": name,
        "image_origin": ResourceOrigin.INTERNAL,
        "image_category": ImageCategory.GENERAL,
        "width": 64,
        "height": 48,
        "created_at": "ms",
        "updated_at": "ms",
        "deleted_at": None,
        "is_intermediate": False,
        "session_id": None,
        "node_id": None,
        "starred": False,
        "has_workflow": False,
        "image_subfolder": "",
    }
    values.update(changes)
    return ImageRecord(**values)  # type: ignore[arg-type]


def test_get_images_for_board(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    """Stock returns the whole board, most recently (re)assigned first, ignores offset/limit (only echoed),
    and counts every image in the database as the total."""
    a, b = boards
    add_image(backend, "first.png", session_id="s1", node_id="n1", starred=True)
    add_image(backend, "second.png", category="mask", origin="external", width=7, height=9, is_intermediate=True)
    add_image(backend, "third.png")
    add_image(backend, "elsewhere.png")
    add_spaced(service, a, "first.png")
    add_spaced(service, a, "second.png")
    add_spaced(service, a, "third.png")
    add_spaced(service, b, "elsewhere.png")
    result = service.get_images_for_board(a, offset=1, limit=1)
    assert result.model_copy(update={"items": [normal(i) for i in result.items]}) == OffsetPaginatedResults(
        items=[
            image_record("third.png"),
            image_record(
                "second.png",
                image_origin=ResourceOrigin.EXTERNAL,
                image_category=ImageCategory.MASK,
                width=7,
                height=9,
                is_intermediate=True,
            ),
            image_record("first.png", session_id="s1", node_id="n1", starred=True),
        ],
        offset=1,
        limit=1,
        total=4,
    )
    add_spaced(service, a, "first.png")  # re-adding to the same board refreshes the membership's updated_at
    assert [i.image_name for i in service.get_images_for_board(a).items] == ["first.png", "third.png", "second.png"]
    assert service.get_images_for_board("no-such-board").items == []


def test_moving_an_image_refreshes_its_membership_time_unlike_stock(
    backend: Backend, service: Service, boards: tuple[str, str]
) -> None:
    """A known difference, in the one method no InvokeAI code calls. Stock's ``tg_board_images_updated_at``
    stamps ``WHERE board_id = old.board_id``, which no longer matches a row whose board just changed, so a
    moved image keeps its old ``updated_at`` (a stock bug: the trigger exists to stamp updates). The
    PostgreSQL trigger stamps every update, so a moved image counts as the most recently assigned."""
    a, b = boards
    add_image(backend, "moved.png")
    add_image(backend, "stays.png")
    add_spaced(service, b, "moved.png")
    add_spaced(service, a, "stays.png")
    add_spaced(service, a, "moved.png")
    order = [i.image_name for i in service.get_images_for_board(a).items]
    assert order == (["moved.png", "stays.png"] if backend.is_postgres else ["stays.png", "moved.png"])


# --- statement counts (PostgreSQL only) ---------------------------------------------------------------------


@pytest.mark.postgres_only
def test_lists_run_a_bounded_number_of_statements(backend: Backend, service: Service, boards: tuple[str, str]) -> None:
    a, b = boards
    for number in range(30):
        add_image(backend, f"{number:02}.png")
        service.add_image_to_board(a if number < 3 else b, f"{number:02}.png")
    for number in range(5):
        add_image(backend, f"loose-{number}.png")
    for board_id, size in ((a, 3), (b, 27)):
        with count_statements(backend.engine) as log:
            assert len(service.get_all_board_image_names_for_board(board_id, [C.GENERAL], False, "system")) == size
        assert log.count == 1
        with count_statements(backend.engine) as log:
            assert len(service.get_images_for_board(board_id).items) == size
        assert log.count == 2
    with count_statements(backend.engine) as log:
        assert len(service.get_all_board_image_names_for_board("none", None, None)) == 5
        service.get_image_count_for_board(a)
        service.get_asset_count_for_board(a)
        service.get_board_for_image("00.png")
    assert log.count == 4
