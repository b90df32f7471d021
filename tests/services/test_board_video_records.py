"""BoardVideoRecordStorage: stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

import time

import pytest
from invokeai.app.services.board_video_records.board_video_records_base import BoardVideoRecordStorageBase
from invokeai.app.services.board_video_records.board_video_records_sqlite import SqliteBoardVideoRecordStorage
from invokeai.app.services.image_records.image_records_common import ImageCategory

from invokeai_saas.services.board_video_records.board_video_records_postgres import PostgresBoardVideoRecordStorage
from tests.services.conftest import Backend
from tests.services.helpers_boards import FK_ERRORS, add_board, add_video, execute, scalar
from tests.support.sql_counter import count_statements

C = ImageCategory


@pytest.fixture()
def service(backend: Backend) -> BoardVideoRecordStorageBase:
    if backend.is_postgres:
        return PostgresBoardVideoRecordStorage(backend.engine)
    return SqliteBoardVideoRecordStorage(backend.db)


@pytest.fixture()
def boards(backend: Backend) -> tuple[str, str]:
    return add_board(backend, "board-a", "alice"), add_board(backend, "board-b", "bob")


def add_spaced(service: BoardVideoRecordStorageBase, board_id: str, video_name: str) -> None:
    """Add with a pause first, so memberships get distinct millisecond timestamps."""
    time.sleep(0.003)
    service.add_video_to_board(board_id, video_name)


def test_add_move_and_get_board(
    backend: Backend, service: BoardVideoRecordStorageBase, boards: tuple[str, str]
) -> None:
    a, b = boards
    add_video(backend, "one.mp4")
    add_video(backend, "two.mp4")
    assert service.get_board_for_video("one.mp4") is None
    service.add_video_to_board(a, "one.mp4")
    assert service.get_board_for_video("one.mp4") == a
    assert service.get_board_for_video("two.mp4") is None
    # A video is on one board at most: adding it elsewhere moves it.
    service.add_video_to_board(b, "one.mp4")
    assert service.get_board_for_video("one.mp4") == b
    service.add_video_to_board(b, "one.mp4")  # again: no error, no duplicate
    assert scalar(backend, "SELECT COUNT(*) FROM board_videos") == 1
    assert service.get_board_for_video("never-stored.mp4") is None


def test_add_refuses_unknown_board_or_video(
    backend: Backend, service: BoardVideoRecordStorageBase, boards: tuple[str, str]
) -> None:
    a, _ = boards
    add_video(backend, "one.mp4")
    with pytest.raises(FK_ERRORS):
        service.add_video_to_board("no-such-board", "one.mp4")
    with pytest.raises(FK_ERRORS):
        service.add_video_to_board(a, "no-such-video.mp4")
    assert scalar(backend, "SELECT COUNT(*) FROM board_videos") == 0


def test_remove_takes_the_video_off_any_board(
    backend: Backend, service: BoardVideoRecordStorageBase, boards: tuple[str, str]
) -> None:
    a, b = boards
    add_video(backend, "one.mp4")
    add_video(backend, "two.mp4")
    service.add_video_to_board(a, "one.mp4")
    service.add_video_to_board(b, "two.mp4")
    assert service.remove_video_from_board("one.mp4") is None
    assert service.get_board_for_video("one.mp4") is None
    assert service.get_board_for_video("two.mp4") == b
    service.remove_video_from_board("one.mp4")  # again: no error
    service.remove_video_from_board("never-stored.mp4")
    assert scalar(backend, "SELECT COUNT(*) FROM videos") == 2


def test_memberships_follow_deletes(
    backend: Backend, service: BoardVideoRecordStorageBase, boards: tuple[str, str]
) -> None:
    a, b = boards
    add_video(backend, "one.mp4")
    add_video(backend, "two.mp4")
    service.add_video_to_board(a, "one.mp4")
    service.add_video_to_board(b, "two.mp4")
    execute(backend, "DELETE FROM videos WHERE video_name = 'one.mp4'")
    execute(backend, "DELETE FROM boards WHERE board_id = :b", {"b": b})
    assert service.get_board_for_video("one.mp4") is None
    assert service.get_board_for_video("two.mp4") is None
    assert service.get_all_board_video_names_for_board("none", None, None) == ["two.mp4"]


@pytest.fixture()
def library(backend: Backend, service: BoardVideoRecordStorageBase, boards: tuple[str, str]) -> None:
    a, b = boards
    add_video(backend, "a-general-alice.mp4", user_id="alice")
    add_video(backend, "a-general-bob.mp4", user_id="bob")
    add_video(backend, "a-user-alice.mp4", category="user", user_id="alice")
    add_video(backend, "a-other-bob.mp4", category="other", user_id="bob")
    add_video(backend, "a-intermediate-alice.mp4", is_intermediate=True, user_id="alice")
    add_video(backend, "b-general-bob.mp4", user_id="bob")
    add_video(backend, "z-loose-alice.mp4", user_id="alice")
    add_video(backend, "m-loose-user-bob.mp4", category="user", user_id="bob")
    add_video(backend, "c-loose-intermediate-system.mp4", is_intermediate=True)
    for name in (
        "a-other-bob.mp4",
        "a-intermediate-alice.mp4",
        "a-general-alice.mp4",
        "a-user-alice.mp4",
        "a-general-bob.mp4",
    ):
        add_spaced(service, a, name)
    add_spaced(service, b, "b-general-bob.mp4")


ON_A = {"a-general-alice.mp4", "a-general-bob.mp4", "a-user-alice.mp4", "a-other-bob.mp4", "a-intermediate-alice.mp4"}
LOOSE = {"z-loose-alice.mp4", "m-loose-user-bob.mp4", "c-loose-intermediate-system.mp4"}

# (board, categories, is_intermediate, user_id) -> expected names
NAME_FILTER_CASES: list[tuple[str, list[ImageCategory] | None, bool | None, str | None, set[str]]] = [
    ("board-a", None, None, None, ON_A),
    ("board-b", None, None, None, {"b-general-bob.mp4"}),
    ("none", None, None, None, LOOSE),
    ("no-such-board", None, None, None, set()),
    ("board-a", [C.GENERAL], None, None, {"a-general-alice.mp4", "a-general-bob.mp4", "a-intermediate-alice.mp4"}),
    ("board-a", [C.USER, C.OTHER, C.USER], None, None, {"a-user-alice.mp4", "a-other-bob.mp4"}),
    ("board-a", [], None, None, set()),
    ("board-a", None, True, None, {"a-intermediate-alice.mp4"}),
    ("board-a", None, False, None, ON_A - {"a-intermediate-alice.mp4"}),
    ("board-a", None, None, "alice", {"a-general-alice.mp4", "a-user-alice.mp4", "a-intermediate-alice.mp4"}),
    ("board-a", [C.GENERAL], False, "bob", {"a-general-bob.mp4"}),
    ("board-a", [C.MASK], None, None, set()),
    ("none", [C.USER], None, None, {"m-loose-user-bob.mp4"}),
    ("none", None, False, None, {"z-loose-alice.mp4", "m-loose-user-bob.mp4"}),
    ("none", None, True, "system", {"c-loose-intermediate-system.mp4"}),
    ("none", None, None, "alice", {"z-loose-alice.mp4"}),
    ("none", [], None, None, set()),
]


def test_video_names_filters(service: BoardVideoRecordStorageBase, library: None) -> None:
    """Every filter combination against one library (one database per backend keeps the suite quick)."""
    for board, categories, is_intermediate, user_id, expected in NAME_FILTER_CASES:
        result = service.get_all_board_video_names_for_board(board, categories, is_intermediate, user_id)
        case = (board, categories, is_intermediate, user_id)
        # Stock has no ORDER BY: the order is SQLite's plan's, so only the set (and no duplicates) is compared.
        assert len(result) == len(set(result)), case
        assert set(result) == expected, case


def test_video_names_order(service: BoardVideoRecordStorageBase, library: None) -> None:
    """Unfiltered, stock's plan returns a board's videos in the order they joined it and loose videos by
    name; PostgreSQL always does."""
    assert service.get_all_board_video_names_for_board("board-a", None, None) == [
        "a-other-bob.mp4",
        "a-intermediate-alice.mp4",
        "a-general-alice.mp4",
        "a-user-alice.mp4",
        "a-general-bob.mp4",
    ]
    assert service.get_all_board_video_names_for_board("none", None, None) == sorted(LOOSE)


def test_video_count(service: BoardVideoRecordStorageBase, library: None, boards: tuple[str, str]) -> None:
    a, b = boards
    # Non-intermediate videos of any category.
    assert service.get_video_count_for_board(a) == 4
    assert service.get_video_count_for_board(b) == 1
    assert service.get_video_count_for_board("no-such-board") == 0
    assert service.get_video_count_for_board("none") == 0
    service.add_video_to_board(b, "a-user-alice.mp4")
    service.add_video_to_board(b, "a-intermediate-alice.mp4")
    assert (service.get_video_count_for_board(a), service.get_video_count_for_board(b)) == (3, 2)
    service.remove_video_from_board("b-general-bob.mp4")
    assert service.get_video_count_for_board(b) == 1


@pytest.mark.postgres_only
def test_lists_run_a_bounded_number_of_statements(
    backend: Backend, service: BoardVideoRecordStorageBase, boards: tuple[str, str]
) -> None:
    a, b = boards
    for number in range(30):
        add_video(backend, f"{number:02}.mp4")
        service.add_video_to_board(a if number < 3 else b, f"{number:02}.mp4")
    for number in range(5):
        add_video(backend, f"loose-{number}.mp4")
    for board_id, size in ((a, 3), (b, 27)):
        with count_statements(backend.engine) as log:
            assert len(service.get_all_board_video_names_for_board(board_id, [C.GENERAL], False, "system")) == size
        assert log.count == 1
    with count_statements(backend.engine) as log:
        assert len(service.get_all_board_video_names_for_board("none", None, None)) == 5
        assert service.get_video_count_for_board(b) == 27
        assert service.get_board_for_video("00.mp4") == a
    assert log.count == 3
