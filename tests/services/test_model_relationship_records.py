"""ModelRelationshipRecordStorage: stock SQLite vs PostgreSQL, same behaviour."""

from __future__ import annotations

import threading

import pytest
from invokeai.app.services.model_records.model_records_base import ModelRecordServiceBase
from invokeai.app.services.model_relationship_records.model_relationship_records_base import (
    ModelRelationshipRecordStorageBase,
)
from invokeai.app.services.model_relationship_records.model_relationship_records_sqlite import (
    SqliteModelRelationshipRecordStorage,
)

from invokeai_saas.services.model_relationship_records.model_relationship_records_postgres import (
    PostgresModelRelationshipRecordStorage,
)
from tests.services.conftest import Backend
from tests.services.helpers_models import model_store, ti
from tests.support.sql_counter import count_statements

# Keys chosen so byte order, case and non-ASCII all matter: stock returns keys in byte (UTF-8) order.
KEYS = ["m", "B", "a", "z", "é", "c", "A-1", "a_2"]


@pytest.fixture()
def store(backend: Backend) -> ModelRecordServiceBase:
    return model_store(backend)


@pytest.fixture()
def relationships(backend: Backend, store: ModelRecordServiceBase) -> ModelRelationshipRecordStorageBase:
    for key in KEYS:
        store.add_model(ti(key, name=f"model {key}"))
    if backend.is_postgres:
        return PostgresModelRelationshipRecordStorage(backend.engine)
    return SqliteModelRelationshipRecordStorage(backend.db)


def test_add_and_get_both_directions_in_byte_order(relationships: ModelRelationshipRecordStorageBase) -> None:
    assert relationships.get_related_model_keys("m") == []
    for other in ["z", "B", "é", "a", "c"]:
        relationships.add_model_relationship("m", other)
    relationships.add_model_relationship("c", "a")  # stored as (a, c)
    assert relationships.get_related_model_keys("m") == ["B", "a", "c", "z", "é"]
    assert relationships.get_related_model_keys("c") == ["a", "m"]
    assert relationships.get_related_model_keys("a") == ["c", "m"]
    assert relationships.get_related_model_keys("é") == ["m"]
    assert relationships.get_related_model_keys("A-1") == []
    assert relationships.get_related_model_keys("unknown") == []


def test_add_is_idempotent_in_either_order(relationships: ModelRelationshipRecordStorageBase) -> None:
    relationships.add_model_relationship("m", "a")
    relationships.add_model_relationship("m", "a")
    relationships.add_model_relationship("a", "m")
    assert relationships.get_related_model_keys("m") == ["a"]
    assert relationships.get_related_model_keys("a") == ["m"]


def test_add_refuses_self_relationship(relationships: ModelRelationshipRecordStorageBase) -> None:
    with pytest.raises(ValueError, match="Cannot relate a model to itself."):
        relationships.add_model_relationship("m", "m")
    assert relationships.get_related_model_keys("m") == []


def test_add_refuses_unknown_model(relationships: ModelRelationshipRecordStorageBase) -> None:
    """The pair references models: both backends refuse a key that is not installed. Stock raises SQLite's
    IntegrityError (its route answers 500); saas mode raises the ValueError the route answers with 409."""
    with pytest.raises(Exception, match="(?i)foreign key|must be installed"):
        relationships.add_model_relationship("m", "not-installed")
    assert relationships.get_related_model_keys("m") == []


def test_remove(relationships: ModelRelationshipRecordStorageBase) -> None:
    relationships.add_model_relationship("m", "a")
    relationships.add_model_relationship("m", "z")
    relationships.remove_model_relationship("a", "m")  # either orientation
    assert relationships.get_related_model_keys("m") == ["z"]
    assert relationships.get_related_model_keys("a") == []
    relationships.remove_model_relationship("m", "z")
    assert relationships.get_related_model_keys("m") == []
    # Removing what is not there is silent, as in stock (the self pair included).
    relationships.remove_model_relationship("m", "z")
    relationships.remove_model_relationship("m", "m")
    relationships.remove_model_relationship("nope", "m")


def test_deleting_a_model_drops_its_relationships(
    relationships: ModelRelationshipRecordStorageBase, store: ModelRecordServiceBase
) -> None:
    relationships.add_model_relationship("m", "a")
    relationships.add_model_relationship("m", "z")
    relationships.add_model_relationship("a", "z")
    store.del_model("z")
    assert relationships.get_related_model_keys("m") == ["a"]
    assert relationships.get_related_model_keys("a") == ["m"]
    assert relationships.get_related_model_keys("z") == []


def test_get_related_model_keys_batch(relationships: ModelRelationshipRecordStorageBase) -> None:
    relationships.add_model_relationship("m", "z")
    relationships.add_model_relationship("m", "B")
    relationships.add_model_relationship("a", "c")
    relationships.add_model_relationship("c", "é")
    relationships.add_model_relationship("A-1", "a_2")

    assert relationships.get_related_model_keys_batch([]) == []
    assert relationships.get_related_model_keys_batch(["m"]) == ["B", "z"]
    # Distinct, byte order; a requested key is included when another requested key relates to it.
    assert relationships.get_related_model_keys_batch(["c", "a", "m"]) == ["B", "a", "c", "z", "é"]
    assert relationships.get_related_model_keys_batch(["z", "z", "B"]) == ["m"]
    assert relationships.get_related_model_keys_batch(["unknown", "a_2"]) == ["A-1"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_batch_runs_one_statement_whatever_its_size(
    backend: Backend, relationships: ModelRelationshipRecordStorageBase
) -> None:
    for other in KEYS[1:]:
        relationships.add_model_relationship("m", other)
    counts = []
    for keys in (["m"], KEYS + [f"missing-{i}" for i in range(500)]):
        with count_statements(backend.engine) as log:
            relationships.get_related_model_keys_batch(keys)
        counts.append(log.count)
    assert counts == [1, 1]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_adds_of_one_pair(relationships: ModelRelationshipRecordStorageBase) -> None:
    """Several processes relating the same pair at once (in both orientations) all succeed; one row results."""
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def add(first: str, second: str) -> None:
        try:
            barrier.wait()
            relationships.add_model_relationship(first, second)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=add, args=("m", "a") if i % 2 else ("a", "m")) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert relationships.get_related_model_keys("m") == ["a"]
