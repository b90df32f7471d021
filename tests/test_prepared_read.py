"""``PreparedRead``: the hot-path reads that bypass SQLAlchemy's per-call work must return what Core returns,
leave pooled connections as they found them, and fail the way Core fails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, bindparam, create_engine, insert, select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.pool import NullPool

from invokeai_saas.db.prepared import PreparedRead
from invokeai_saas.db.tables import boards, images
from tests.support.sql_counter import count_statements

BOARD_BY_ID = PreparedRead(select(boards).where(boards.c.board_id == bindparam("board_id")))


def add_board(engine: Engine, board_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(boards).values(
                board_id=board_id,
                board_name=f"name of {board_id}",
                user_id="system",
                created_at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            )
        )


def test_rows_equal_what_core_returns(pg_engine: Engine) -> None:
    add_board(pg_engine, "b1")
    with pg_engine.connect() as conn:
        expected = conn.execute(select(boards).where(boards.c.board_id == "b1")).one()
    row = BOARD_BY_ID.first(pg_engine, board_id="b1")
    assert row is not None
    assert row._asdict() == expected._asdict()
    assert row.created_at == datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert BOARD_BY_ID.first(pg_engine, board_id="missing") is None
    assert BOARD_BY_ID.all(pg_engine, board_id="b1") == [row]
    assert PreparedRead(select(boards.c.board_name).where(boards.c.board_id == bindparam("b"))).scalar(
        pg_engine, b="b1"
    ) == ("name of b1")


def test_literals_written_in_the_statement_are_bound(pg_engine: Engine) -> None:
    add_board(pg_engine, "b1")
    add_board(pg_engine, "b2")
    query = PreparedRead(
        select(boards.c.board_id).where(boards.c.board_name == "name of b2", boards.c.archived.is_(False))
    )
    assert [row.board_id for row in query.all(pg_engine)] == ["b2"]


def test_statement_shapes_that_depend_on_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="expanding"):
        PreparedRead(select(images.c.image_name).where(images.c.image_name.in_(bindparam("names", expanding=True))))


def test_wrong_parameters_are_refused(pg_engine: Engine) -> None:
    with pytest.raises(TypeError, match="board_id"):
        BOARD_BY_ID.first(pg_engine)
    with pytest.raises(TypeError):
        BOARD_BY_ID.first(pg_engine, board_id="b1", extra=1)


def test_pooled_connection_goes_back_transactional(pg_engine: Engine) -> None:
    """The read runs in autocommit; the connection it used must come back out of autocommit, or the next
    ``engine.begin()`` on it would commit statement by statement and a rollback would undo nothing."""
    BOARD_BY_ID.first(pg_engine, board_id="b1")
    with pg_engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False
        trans = conn.begin()
        conn.execute(insert(boards).values(board_id="rolled-back", board_name="x", user_id="system"))
        trans.rollback()
    assert BOARD_BY_ID.first(pg_engine, board_id="rolled-back") is None


def test_statement_listeners_see_prepared_reads(pg_engine: Engine) -> None:
    with count_statements(pg_engine) as log:
        BOARD_BY_ID.first(pg_engine, board_id="b1")
        BOARD_BY_ID.first(pg_engine, board_id="b2")
    assert log.statements == [BOARD_BY_ID.sql, BOARD_BY_ID.sql]


def test_errors_are_sqlalchemy_errors_and_the_pool_stays_usable(pg_engine: Engine) -> None:
    broken = PreparedRead(select(text("no_such_column")).select_from(boards))
    with pytest.raises(ProgrammingError):
        broken.all(pg_engine)
    add_board(pg_engine, "after-error")
    assert BOARD_BY_ID.first(pg_engine, board_id="after-error") is not None


def test_a_dead_connection_is_dropped_from_the_pool(pg_engine: Engine) -> None:
    """A backend killed under a pooled connection: the read fails as a disconnect, the connection is
    invalidated, and the next read gets a new one instead of the dead one again."""
    add_board(pg_engine, "b1")
    pg_engine.dispose()
    fairy = pg_engine.raw_connection()  # the pool's only connection from now on
    pid = fairy.driver_connection.info.backend_pid
    fairy.close()
    killer = create_engine(pg_engine.url, poolclass=NullPool)
    with killer.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar() is True
    killer.dispose()
    with pytest.raises(DBAPIError) as failure:
        BOARD_BY_ID.first(pg_engine, board_id="b1")
    assert failure.value.connection_invalidated
    assert BOARD_BY_ID.first(pg_engine, board_id="b1") is not None
