"""The saas-mode reads of the PostgreSQL session queue (``owner_views``, ``stored_items``, ``dispatch_order``):
each owner's views hold only their items in one statement whatever the size, ``items_ahead`` is the place the
claim really serves, the owner's own status rides in their events, and an unreadable row is read as a placeholder
and failed (not run) by the claim, which then serves the next item."""

from __future__ import annotations

from typing import Any, cast

from invokeai.app.services.events.events_common import QueueItemStatusChangedEvent
from sqlalchemy import Engine, text

from invokeai_saas.services.session_queue.owner_views import OwnerQueueViews
from invokeai_saas.services.session_queue.session_queue_postgres import PostgresSessionQueue
from invokeai_saas.services.session_queue.stored_items import UNREADABLE_ERROR_TYPE
from tests.services.conftest import Backend
from tests.services.helpers import add_user
from tests.services.test_session_queue import Harness, enqueue, make_batch, start_queue
from tests.support.sql_counter import count_statements

Q = "default"


def _harness(pg_engine: Engine) -> tuple[Harness, OwnerQueueViews]:
    backend = Backend("postgres", pg_engine)
    for user in ("alice", "bob", "carol"):
        add_user(backend, user)
    h = start_queue(backend, multiuser=True)  # round robin, as saas mode runs
    queue = cast(PostgresSessionQueue, h.queue)
    queue.scope_views_to_owners()
    return h, OwnerQueueViews(queue)


def _seed(h: Harness, user: str, count: int, batch_id: str) -> list[int]:
    return sorted(enqueue(h, make_batch(list(range(count)), batch_id=batch_id), user).item_ids)


def test_each_owner_sees_only_their_items_in_one_statement(pg_engine: Engine) -> None:
    h, views = _harness(pg_engine)
    alice = _seed(h, "alice", 3, "a")
    bob = _seed(h, "bob", 1, "b")
    everyone = [*alice, *bob]
    assert [i.item_id for i in views.list_items(Q, "alice")] == alice
    assert [i.item_id for i in views.list_items(Q, "bob")] == bob
    assert views.list_items(Q, "carol") == [] and views.list_items("other", "alice") == []
    assert [i.item_id for i in views.items_by_ids(Q, "bob", [*everyone, bob[0]])] == [bob[0], bob[0]]
    assert [s.item_id for s in views.summaries_by_ids(Q, "alice", everyone[::-1])] == alice[::-1]
    assert views.next(Q, "bob").item_id == bob[0]  # type: ignore[union-attr]
    assert views.current(Q, "alice") is None

    def statements(call: Any) -> int:
        with count_statements(pg_engine) as log:
            call()
        return log.count

    reads = {
        "list": lambda: views.list_items(Q, "alice"),
        "by_ids": lambda: views.items_by_ids(Q, "alice", everyone),
        "summaries": lambda: views.summaries_by_ids(Q, "alice", everyone),
        "status": lambda: views.status(Q, "alice"),
    }
    small = {name: statements(read) for name, read in reads.items()}
    _seed(h, "alice", 40, "more")
    large = {name: statements(read) for name, read in reads.items()}
    assert small == large == {"list": 1, "by_ids": 1, "summaries": 1, "status": 1}


def test_items_ahead_is_the_place_the_claim_serves(pg_engine: Engine) -> None:
    h, views = _harness(pg_engine)
    alice = _seed(h, "alice", 3, "a")
    bob = _seed(h, "bob", 1, "b")
    # Round robin, nobody served yet: alice's first (lower id), bob's first, then alice's others.
    assert views.status(Q, "alice").items_ahead == 0
    assert views.status(Q, "bob").items_ahead == 1
    carol = views.status(Q, "carol")
    assert (carol.total, carol.pending, carol.items_ahead, carol.item_id) == (0, 0, None, None)

    h.events.take()
    first = h.queue.dequeue()
    assert first is not None and first.item_id == alice[0]
    status = views.status(Q, "alice")
    assert (status.pending, status.in_progress, status.total, status.item_id) == (2, 1, 3, alice[0])
    assert (status.user_pending, status.user_in_progress) == (2, 1)
    # alice was just served: bob's turn comes first now, and the claim agrees.
    assert views.status(Q, "bob").items_ahead == 0 and views.status(Q, "alice").items_ahead == 1
    (event,) = h.events.take()
    assert isinstance(event, QueueItemStatusChangedEvent)
    # The owner's own view rides in the event: bob's pending item is not in alice's counts.
    assert (event.queue_status.pending, event.queue_status.in_progress, event.queue_status.total) == (2, 1, 3)
    second = h.queue.dequeue()
    assert second is not None and second.item_id == bob[0]


def test_an_unreadable_row_is_listed_and_failed_by_the_claim_which_serves_the_next(pg_engine: Engine) -> None:
    h, views = _harness(pg_engine)
    (broken,) = _seed(h, "alice", 1, "a")
    (good,) = _seed(h, "bob", 1, "b")
    with pg_engine.begin() as conn:
        conn.execute(
            text("""UPDATE session_queue SET session = replace(session, '"type": "add"', '"type": "gone"')
                    WHERE item_id = :i"""),
            {"i": broken},
        )
    (listed,) = views.list_items(Q, "alice")
    assert listed.status == "pending" and listed.error_type == UNREADABLE_ERROR_TYPE
    assert [i.item_id for i in h.queue.list_all_queue_items(Q)] == [broken, good]  # stock's read: no 500 either
    h.events.take()
    claimed = h.queue.dequeue()
    assert claimed is not None and claimed.item_id == good
    failed = h.queue.get_queue_item(broken)
    assert failed.status == "failed" and failed.error_type == UNREADABLE_ERROR_TYPE
    announced = [(e.item_id, e.status) for e in h.events.take() if isinstance(e, QueueItemStatusChangedEvent)]
    assert announced == [(broken, "failed"), (good, "in_progress")]
    assert h.queue.retry_items_by_id(Q, [broken]).retried_item_ids == []  # no graph to run again
