"""ModelRecordService: stock SQLite (``ModelRecordServiceSQL``) vs PostgreSQL, same behaviour.

Configs are real InvokeAI model config objects (the classes ``ModelConfigFactory`` builds), so the jsonb round
trip is checked against exactly what the model manager stores.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from invokeai.app.services.model_records.model_records_base import (
    DuplicateModelException,
    ModelRecordChanges,
    ModelRecordOrderBy,
    ModelRecordServiceBase,
    ModelSummary,
    UnknownModelException,
)
from invokeai.app.services.model_records.model_records_sql import _construct_config_for_type
from invokeai.app.services.shared.pagination import PaginatedResults
from invokeai.app.services.shared.sqlite.sqlite_common import SQLiteDirection
from invokeai.backend.model_manager.configs.controlnet import ControlNet_Checkpoint_SD1_Config
from invokeai.backend.model_manager.configs.factory import AnyModelConfig
from invokeai.backend.model_manager.configs.lora import LoRA_Diffusers_SD2_Config, LoraModelDefaultSettings
from invokeai.backend.model_manager.configs.main import Main_Diffusers_SD1_Config, MainModelDefaultSettings
from invokeai.backend.model_manager.configs.spandrel import Spandrel_Checkpoint_Config
from invokeai.backend.model_manager.configs.t2i_adapter import T2IAdapter_Diffusers_SDXL_Config
from invokeai.backend.model_manager.configs.vae import VAE_Checkpoint_FLUX_Config
from invokeai.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType
from sqlalchemy import text

from tests.services.conftest import Backend
from tests.services.helpers_models import LOGGER_NAME, common_fields, model_store, ti
from tests.support.sql_counter import count_statements


@pytest.fixture()
def store(backend: Backend) -> ModelRecordServiceBase:
    return model_store(backend)


def rich_main(key: str = "main-1") -> Main_Diffusers_SD1_Config:
    """A config using most of what a stored record can carry: nested settings, floats, sets, unicode."""
    return Main_Diffusers_SD1_Config(
        **common_fields(key, 'Dreamshaper ✨ "8"', f"/models/{key}", file_size=5_123_456_789),
        description="línea 1\nline 2 — 'quoted' \\ backslash",
        variant="normal",
        prediction_type="epsilon",
        trigger_phrases={"masterpiece", "best quality"},
        default_settings=MainModelDefaultSettings(cfg_scale=7.5, steps=30, width=768, height=512),
        source_api_response=json.dumps({"id": 42, "nested": {"ok": True}}),
        source_url="https://example.com/model",
        cover_image="main-1.png",
    )


def seed_models() -> list[AnyModelConfig]:
    """Seven models with distinct types (so stock's order is fully defined wherever the type leads), mixed-case and
    non-ASCII names (NOCASE folds ASCII only), paths that differ in case (BINARY order) and sizes past 2**31."""
    return [
        ti("k-embed", name="b-embed", path="/models/b.bin", file_size=300, description="an embedding"),
        Main_Diffusers_SD1_Config(
            **common_fields("k-main", "Alpha", "/models/Alpha", file_size=5_000_000_000),
            variant="normal",
            prediction_type="epsilon",
        ),
        VAE_Checkpoint_FLUX_Config(**common_fields("k-vae", "éclair", "/models/vae.safetensors", file_size=100)),
        LoRA_Diffusers_SD2_Config(
            **common_fields("k-lora", "alpine", "/models/lora", file_size=200),
            default_settings=LoraModelDefaultSettings(weight=0.75),
        ),
        ControlNet_Checkpoint_SD1_Config(**common_fields("k-cn", "Zeta", "/models/cn.ckpt", file_size=400)),
        Spandrel_Checkpoint_Config(**common_fields("k-spandrel", "_under", "/models/up.pth", file_size=250)),
        T2IAdapter_Diffusers_SDXL_Config(**common_fields("k-t2i", "[bracket", "/models/B-upper", file_size=50)),
    ]


def add_all(store: ModelRecordServiceBase, configs: list[AnyModelConfig]) -> None:
    for config in configs:
        store.add_model(config)
        time.sleep(0.002)  # distinct created_at milliseconds: DateAdded order is defined in stock


def _nocase(value: str) -> bytes:
    return bytes(b + 32 if 65 <= b <= 90 else b for b in value.encode())


def _binary(value: str) -> bytes:
    return value.encode()


def expected_order(
    configs: list[AnyModelConfig],
    order_by: ModelRecordOrderBy,
    direction: SQLiteDirection,
    touched: list[str],
) -> list[str]:
    """Stock's documented ordering, ties in insertion order (Python's sort is stable, ``reverse`` included).

    ``configs`` is in insertion order; ``touched`` lists keys in the order they were last updated."""
    inserted = [c.key for c in configs]

    def modified(c: AnyModelConfig) -> tuple[int, int]:
        return (1, touched.index(c.key)) if c.key in touched else (0, inserted.index(c.key))

    keys: dict[ModelRecordOrderBy, Callable[[AnyModelConfig], Any]] = {
        ModelRecordOrderBy.Default: lambda c: (
            _binary(c.type.value),
            _nocase(c.base.value),
            _nocase(c.name),
            _binary(c.format.value),
        ),
        ModelRecordOrderBy.Type: lambda c: _binary(c.type.value),
        ModelRecordOrderBy.Base: lambda c: _nocase(c.base.value),
        ModelRecordOrderBy.Name: lambda c: _nocase(c.name),
        ModelRecordOrderBy.Format: lambda c: _binary(c.format.value),
        ModelRecordOrderBy.Size: lambda c: c.file_size,
        ModelRecordOrderBy.DateAdded: lambda c: inserted.index(c.key),
        ModelRecordOrderBy.DateModified: modified,
        ModelRecordOrderBy.Path: lambda c: _binary(c.path),
    }
    ordered = sorted(configs, key=keys[order_by], reverse=direction == SQLiteDirection.Descending)
    return [c.key for c in ordered]


def insert_raw_config(backend: Backend, key: str, config: dict[str, Any]) -> None:
    """A row written behind the service's back (e.g. by a newer InvokeAI before a rollback)."""
    if backend.is_postgres:
        with backend.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO models (id, config) VALUES (:id, CAST(:config AS jsonb))"),
                {"id": key, "config": json.dumps(config)},
            )
    else:
        with backend.db.transaction() as cursor:
            cursor.execute("INSERT INTO models (id, config) VALUES (?, ?)", (key, json.dumps(config)))


# --- add / get / exists / delete ---------------------------------------------------------------------------------


def test_add_and_get_round_trip_whole_config(store: ModelRecordServiceBase) -> None:
    config = rich_main()
    added = store.add_model(config)
    assert added == config
    assert type(added) is Main_Diffusers_SD1_Config
    fetched = store.get_model(config.key)
    assert fetched == config
    assert isinstance(fetched.type, ModelType) and fetched.type is ModelType.Main  # real enums come back
    assert fetched.default_settings is not None and fetched.default_settings.cfg_scale == 7.5
    for seeded in seed_models():
        assert store.add_model(seeded) == seeded
        assert store.get_model(seeded.key) == seeded


def test_add_duplicates_raise_duplicate_model_exception(store: ModelRecordServiceBase) -> None:
    original = ti("k1", path="/models/one.bin")
    store.add_model(original)

    with pytest.raises(DuplicateModelException) as same_key:
        store.add_model(ti("k1", name="other", path="/models/two.bin"))
    assert str(same_key.value) == "A model with key 'k1' is already installed"

    with pytest.raises(DuplicateModelException) as same_path:
        store.add_model(ti("k2", path="/models/one.bin"))
    assert str(same_path.value) == "A model with path '/models/one.bin' is already installed"

    # Clashing on both: stock's SQLite checks the path first.
    with pytest.raises(DuplicateModelException) as both:
        store.add_model(ti("k1", path="/models/one.bin"))
    assert str(both.value) == "A model with path '/models/one.bin' is already installed"

    assert store.all_models() == [original]


def test_get_model_unknown_key(store: ModelRecordServiceBase) -> None:
    with pytest.raises(UnknownModelException, match="model not found"):
        store.get_model("nope")


def test_exists(store: ModelRecordServiceBase) -> None:
    assert store.exists("k1") is False
    store.add_model(ti("k1"))
    assert store.exists("k1") is True
    assert store.exists("K1") is False  # keys are case-sensitive
    assert store.exists("k") is False


def test_del_model(store: ModelRecordServiceBase) -> None:
    store.add_model(ti("k1"))
    store.add_model(ti("k2"))
    store.del_model("k1")
    assert store.exists("k1") is False
    with pytest.raises(UnknownModelException):
        store.get_model("k1")
    assert [m.key for m in store.all_models()] == ["k2"]
    with pytest.raises(UnknownModelException, match="model not found"):
        store.del_model("k1")
    # The path is free again.
    assert store.add_model(ti("k3", path="/models/k1.safetensors")).key == "k3"


# --- update / replace --------------------------------------------------------------------------------------------


def test_update_model_in_place(store: ModelRecordServiceBase) -> None:
    store.add_model(rich_main())
    changes = ModelRecordChanges(
        name="Renamed",
        description="new description",
        trigger_phrases={"one"},
        default_settings=MainModelDefaultSettings(steps=12),
        source_url="https://example.com/new",
    )
    updated = store.update_model("main-1", changes)
    expected = rich_main().model_copy(
        update={
            "name": "Renamed",
            "description": "new description",
            "trigger_phrases": {"one"},
            "default_settings": MainModelDefaultSettings(steps=12),
            "source_url": "https://example.com/new",
        }
    )
    assert updated == expected
    assert store.get_model("main-1") == expected
    assert store.search_by_attr(model_name="Renamed") == [expected]
    assert store.search_by_attr(model_name=rich_main().name) == []

    # No changes at all: the record comes back unchanged.
    assert store.update_model("main-1", ModelRecordChanges()) == expected


def test_update_model_rejects_invalid_change_and_keeps_record(store: ModelRecordServiceBase) -> None:
    original = store.add_model(ti("k1"))
    with pytest.raises(pydantic.ValidationError):
        store.update_model("k1", ModelRecordChanges(type=ModelType.LoRA))  # an embedding cannot become a LoRA
    assert store.get_model("k1") == original


def test_update_model_unknown_key(store: ModelRecordServiceBase) -> None:
    with pytest.raises(UnknownModelException, match="model not found"):
        store.update_model("nope", ModelRecordChanges(name="x"))
    with pytest.raises(UnknownModelException):
        store.update_model("nope", ModelRecordChanges(name="x"), allow_class_change=True)


def test_update_model_class_change(store: ModelRecordServiceBase) -> None:
    original = store.add_model(ti("k1", name="was an embedding"))
    changed = store.update_model("k1", ModelRecordChanges(type=ModelType.LoRA), allow_class_change=True)
    # The stale embedding_file format is dropped and the first LoRA class that validates is used. Stock tries the
    # classes in set order (it varies between processes), so the expectation is computed the same way.
    fallback = {k: v for k, v in original.model_dump().items() if k not in ("format", "variant")}
    expected = _construct_config_for_type({**fallback, "type": ModelType.LoRA}, ModelType.LoRA)
    assert changed == expected
    assert (changed.key, changed.type, changed.name) == ("k1", ModelType.LoRA, "was an embedding")
    assert store.get_model("k1") == changed
    assert store.search_by_attr(model_type=ModelType.LoRA) == [changed]
    assert store.search_by_attr(model_type=ModelType.TextualInversion) == []


def test_update_model_onto_taken_path_is_refused(backend: Backend, store: ModelRecordServiceBase) -> None:
    """Stock lets sqlite3's IntegrityError escape; ours raises DuplicateModelException (see its docstring).
    Either way the record is unchanged."""
    first = store.add_model(ti("k1", path="/models/one.bin"))
    second = store.add_model(ti("k2", path="/models/two.bin"))
    expected_error: type[Exception] = DuplicateModelException if backend.is_postgres else sqlite3.IntegrityError
    with pytest.raises(expected_error):
        store.update_model("k2", ModelRecordChanges(path="/models/one.bin", name="moved"))
    assert store.get_model("k1") == first
    assert store.get_model("k2") == second


def test_replace_model(store: ModelRecordServiceBase) -> None:
    store.add_model(ti("k1"))
    replacement = LoRA_Diffusers_SD2_Config(
        **common_fields("k1", "re-identified", "/models/k1.safetensors", file_size=77)
    )
    assert store.replace_model("k1", replacement) == replacement
    assert store.get_model("k1") == replacement
    assert type(store.get_model("k1")) is LoRA_Diffusers_SD2_Config

    with pytest.raises(ValueError, match="key does not match new_config.key"):
        store.replace_model("other", replacement)
    with pytest.raises(UnknownModelException, match="model not found"):
        store.replace_model("nope", ti("nope"))
    assert store.exists("nope") is False


# --- hash / path lookups -----------------------------------------------------------------------------------------


def test_get_model_by_hash_and_search_by_hash(store: ModelRecordServiceBase) -> None:
    a = ti("k-z", path="/models/a", hash="blake3:same")
    time.sleep(0.002)
    b = ti("k-a", path="/models/b", hash="blake3:same")
    c = ti("k-m", path="/models/c", hash="blake3:other")
    add_all(store, [a, b, c])

    assert store.get_model_by_hash("blake3:other") == c
    assert store.get_model_by_hash("blake3:same") == a  # the first installed
    assert store.search_by_hash("blake3:same") == [a, b]  # installation order, not key order
    assert store.search_by_hash("blake3:nope") == []
    with pytest.raises(UnknownModelException, match="model not found"):
        store.get_model_by_hash("blake3:nope")


def test_search_by_path(store: ModelRecordServiceBase) -> None:
    a = ti("k1", path="/models/Some Dir/a.bin")
    b = ti("k2", path="/models/some dir/a.bin")
    add_all(store, [a, b])
    assert store.search_by_path("/models/Some Dir/a.bin") == [a]
    assert store.search_by_path(Path("/models/some dir/a.bin")) == [b]
    assert store.search_by_path("/models/SOME DIR/a.bin") == []  # paths are compared exactly


# --- search_by_attr / all_models / model_info_by_name ------------------------------------------------------------


def test_search_by_attr_filters(store: ModelRecordServiceBase) -> None:
    configs = seed_models() + [
        ti("k-embed-2", name="Alpha", path="/models/alpha-embed.bin"),
        LoRA_Diffusers_SD2_Config(**common_fields("k-lora-2", "alpine", "/models/lora-2")),
    ]
    add_all(store, configs)
    by_key = {c.key: c for c in configs}

    def keys(models: list[AnyModelConfig]) -> set[str]:
        return {m.key for m in models}

    assert keys(store.search_by_attr()) == set(by_key)
    assert keys(store.search_by_attr(model_name="Alpha")) == {"k-main", "k-embed-2"}
    assert store.search_by_attr(model_name="alpha") == []  # exact, case-sensitive
    assert keys(store.search_by_attr(base_model=BaseModelType.StableDiffusion1)) == {
        "k-embed",
        "k-main",
        "k-cn",
        "k-embed-2",
    }
    assert keys(store.search_by_attr(model_type=ModelType.LoRA)) == {"k-lora", "k-lora-2"}
    assert keys(store.search_by_attr(model_format=ModelFormat.Checkpoint)) == {"k-vae", "k-cn", "k-spandrel"}
    assert keys(
        store.search_by_attr(model_name="Alpha", base_model=BaseModelType.StableDiffusion1, model_type=ModelType.Main)
    ) == {"k-main"}
    assert (
        store.search_by_attr(
            model_name="alpine",
            base_model=BaseModelType.StableDiffusion2,
            model_type=ModelType.LoRA,
            model_format=ModelFormat.Checkpoint,
        )
        == []
    )
    # Plain strings work like the enums (routers pass query values through).
    assert keys(store.search_by_attr(base_model="sd-2", model_type="lora", model_format="diffusers")) == {  # type: ignore[arg-type]
        "k-lora",
        "k-lora-2",
    }
    # An empty name is no filter, as in stock.
    assert keys(store.search_by_attr(model_name="")) == set(by_key)
    # Whole configs come back.
    assert store.search_by_attr(model_type=ModelType.VAE) == [by_key["k-vae"]]
    assert keys(store.all_models()) == set(by_key)


def test_search_by_attr_orderings(store: ModelRecordServiceBase) -> None:
    configs = seed_models()
    add_all(store, configs)
    # Touch two models so DateModified differs from DateAdded.
    touched: list[str] = []
    for key in ("k-cn", "k-embed"):
        time.sleep(0.002)
        store.update_model(key, ModelRecordChanges(description=f"touched {key}"))
        touched.append(key)
    configs = [store.get_model(c.key) for c in configs]

    for order_by in ModelRecordOrderBy:
        for direction in SQLiteDirection:
            found = [m.key for m in store.search_by_attr(order_by=order_by, direction=direction)]
            assert found == expected_order(configs, order_by, direction, touched), (order_by, direction)
    # The default is Default ascending.
    assert [m.key for m in store.search_by_attr()] == expected_order(
        configs, ModelRecordOrderBy.Default, SQLiteDirection.Ascending, touched
    )


def test_search_by_attr_orders_within_filter(store: ModelRecordServiceBase) -> None:
    configs = [
        ti("k1", name="b", path="/m/1", file_size=3),
        ti("k2", name="A", path="/m/2", file_size=1),
        ti("k3", name="c", path="/m/3", file_size=2),
        LoRA_Diffusers_SD2_Config(**common_fields("k4", "a0", "/m/4", file_size=0)),
    ]
    add_all(store, configs)
    embeddings = {"model_type": ModelType.TextualInversion}
    assert [m.key for m in store.search_by_attr(**embeddings, order_by=ModelRecordOrderBy.Name)] == ["k2", "k1", "k3"]
    assert [
        m.key
        for m in store.search_by_attr(
            **embeddings, order_by=ModelRecordOrderBy.Size, direction=SQLiteDirection.Descending
        )
    ] == ["k1", "k3", "k2"]


def test_search_by_attr_skips_invalid_configs(
    backend: Backend, store: ModelRecordServiceBase, caplog: pytest.LogCaptureFixture
) -> None:
    good = store.add_model(ti("k-good", name="good"))
    bad = {**json.loads(ti("k-bad", name="broken").model_dump_json()), "type": "from-the-future"}
    insert_raw_config(backend, "k-bad", bad)

    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert store.search_by_attr() == [good]
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    assert any(m.startswith("Skipping invalid model config in the database with name broken.") for m in messages)
    assert any(m.startswith("Validation error:") for m in messages)
    assert store.exists("k-bad") is True
    with pytest.raises(pydantic.ValidationError):
        store.get_model("k-bad")


def test_model_info_by_name(store: ModelRecordServiceBase) -> None:
    one = ti("k1", name="same", path="/m/1")
    add_all(store, [one, ti("k2", name="twin", path="/m/2"), ti("k3", name="twin", path="/m/3")])
    assert store.model_info_by_name("same", BaseModelType.StableDiffusion1, ModelType.TextualInversion) == one
    with pytest.raises(DuplicateModelException):
        store.model_info_by_name("twin", BaseModelType.StableDiffusion1, ModelType.TextualInversion)
    with pytest.raises(UnknownModelException):
        store.model_info_by_name("same", BaseModelType.StableDiffusionXL, ModelType.TextualInversion)


# --- list_models -------------------------------------------------------------------------------------------------


def test_list_models_empty(store: ModelRecordServiceBase) -> None:
    assert store.list_models() == PaginatedResults[ModelSummary](page=0, pages=0, per_page=10, total=0, items=[])
    assert store.list_models(page=3, per_page=5) == PaginatedResults[ModelSummary](
        page=3, pages=0, per_page=5, total=0, items=[]
    )


def test_list_models_stock_cannot_list_models(backend: Backend, store: ModelRecordServiceBase) -> None:
    """Stock selects only ``config`` and validates ModelSummary from ``{"config": ...}``: with one model installed
    it raises. The PostgreSQL service returns the summaries (see ``test_list_models_pages``)."""
    store.add_model(ti("k1"))
    if backend.is_postgres:
        assert store.list_models().total == 1
    else:
        with pytest.raises(pydantic.ValidationError):
            store.list_models()


def _summary(config: AnyModelConfig) -> ModelSummary:
    return ModelSummary(
        key=config.key,
        type=config.type,
        base=config.base,
        format=config.format,
        name=config.name,
        description=config.description or "",
        tags=set(),
    )


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_list_models_pages(store: ModelRecordServiceBase) -> None:
    configs = seed_models()
    add_all(store, configs)
    by_key = {c.key: c for c in configs}
    for order_by in ModelRecordOrderBy:
        for direction in SQLiteDirection:
            order = expected_order(configs, order_by, direction, touched=[])
            pages = [store.list_models(page=p, per_page=3, order_by=order_by, direction=direction) for p in range(4)]
            for number, result in enumerate(pages):
                assert result == PaginatedResults[ModelSummary](
                    page=number,
                    pages=3,
                    per_page=3,
                    total=7,
                    items=[_summary(by_key[k]) for k in order[number * 3 : number * 3 + 3]],
                ), (order_by, direction, number)
    assert store.list_models().items == [
        _summary(by_key[k])
        for k in expected_order(configs, ModelRecordOrderBy.Default, SQLiteDirection.Ascending, touched=[])
    ]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_list_and_search_run_bounded_statements(backend: Backend, store: ModelRecordServiceBase) -> None:
    add_all(store, seed_models() + [ti(f"extra-{i}", name=f"extra {i}") for i in range(8)])
    counts: dict[str, list[int]] = {"list": [], "search": []}
    for per_page in (2, 15):
        with count_statements(backend.engine) as log:
            assert len(store.list_models(per_page=per_page).items) == per_page
        counts["list"].append(log.count)
    for filters in ({"model_type": ModelType.Main}, {}):
        with count_statements(backend.engine) as log:
            store.search_by_attr(**filters)  # type: ignore[arg-type]
        counts["search"].append(log.count)
    with count_statements(backend.engine) as log:
        assert len(store.search_by_hash("blake3:k-main")) == 1
    assert counts == {"list": [2, 2], "search": [1, 1]}
    assert log.count == 1


# --- concurrency (PostgreSQL: several API processes share one database) ------------------------------------------


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_updates_to_one_model_are_not_lost(store: ModelRecordServiceBase) -> None:
    store.add_model(ti("k1", name="start"))
    changes = [
        ModelRecordChanges(name="renamed"),
        ModelRecordChanges(description="described"),
        ModelRecordChanges(source_url="https://example.com/x"),
        ModelRecordChanges(source_api_response='{"a": 1}'),
        ModelRecordChanges(hash="blake3:rehashed"),
        ModelRecordChanges(file_size=12345),
    ]
    barrier = threading.Barrier(len(changes))
    errors: list[BaseException] = []

    def apply(change: ModelRecordChanges) -> None:
        try:
            barrier.wait()
            store.update_model("k1", change)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=apply, args=(c,)) for c in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = store.get_model("k1")
    assert (final.name, final.description, final.source_url, final.source_api_response, final.hash) == (
        "renamed",
        "described",
        "https://example.com/x",
        '{"a": 1}',
        "blake3:rehashed",
    )
    assert final.file_size == 12345
