"""The plan's model access, through the real API (``saas_web``): the model read routes show a user only the bases
their plan includes (Trial: SD 1.x/2.x/SDXL; Starter: and FLUX; Pro: all; ``any`` models and administrators: all),
and enqueue refuses a graph that uses an excluded model anywhere, not only as its main model.

The model records are written straight into the server's database (as stock's installer stores them: the config
as one JSON document), with paths under a folder that does not exist: nothing here loads weights. Every record is
deleted at the end of the module, so the other suites on the same server never see them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from invokeai.app.api.routers.model_manager import model_manager_router
from invokeai.backend.model_manager.configs.factory import ModelConfigFactory
from sqlalchemy import Engine, text

from invokeai_saas.credits.ledger import CreditLedger
from invokeai_saas.credits.models_route import models_router
from invokeai_saas.devstack.web import InvokeAIWebServer
from tests.support.credits import saas_user, set_plan
from tests.support.invokeai import admin_token

MODELS = "/api/v2/models"
Q = "default"

# In this order: the main models share a hash, and stock's get_by_hash answers the first record installed (FLUX).
RECORDS: dict[str, dict[str, str]] = {
    "flux-main": {"base": "flux", "type": "main", "format": "checkpoint", "variant": "dev"},
    "flux-lora": {"base": "flux", "type": "lora", "format": "lycoris"},
    "sdxl-main": {
        "base": "sdxl",
        "type": "main",
        "format": "checkpoint",
        "variant": "normal",
        "prediction_type": "epsilon",
    },
    "sd3-main": {"base": "sd-3", "type": "main", "format": "diffusers"},
    "t5": {"base": "any", "type": "t5_encoder", "format": "t5_encoder"},
}


class Catalogue:
    """The records this module adds: ``configs[name]`` is the stored config of each."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.configs: dict[str, dict[str, Any]] = {}

    def add(self, engine: Engine, name: str, hash_: str | None = None, **fields: Any) -> None:
        key = str(uuid.uuid4())
        config = ModelConfigFactory.from_dict(
            {
                "key": key,
                "hash": hash_ or f"blake3:{key}",
                "path": f"saas-test-absent/{self.tag}/{name}",
                "name": f"{name}-{self.tag}",
                "source": f"saas-test-absent/{self.tag}/{name}",
                "source_type": "path",
                "file_size": 1,
                **fields,
            }
        )
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO models (id, config) VALUES (:id, CAST(:config AS jsonb))"),
                {"id": key, "config": config.model_dump_json()},
            )
        self.configs[name] = config.model_dump(mode="json")

    def key(self, name: str) -> str:
        return str(self.configs[name]["key"])

    def identifier(self, record: str, **claimed: str) -> dict[str, Any]:
        """A graph's ``ModelIdentifierField`` for the record (``claimed`` overrides what it says)."""
        config = self.configs[record]
        fields = {f: config[f] for f in ("key", "hash", "name", "base", "type")}
        return fields | claimed

    def ours(self, models: list[dict[str, Any]]) -> set[str]:
        """Which of this module's records a model list holds, by name."""
        keys = {str(c["key"]): name for name, c in self.configs.items()}
        return {keys[m["key"]] for m in models if m["key"] in keys}


@pytest.fixture(scope="module")
def catalogue(saas_web: InvokeAIWebServer, saas_db: Engine) -> Iterator[Catalogue]:
    shared_hash = f"blake3:shared-{uuid.uuid4().hex}"
    models = Catalogue()
    try:
        for name, fields in RECORDS.items():
            models.add(saas_db, name, shared_hash if fields["type"] == "main" else None, **fields)
        yield models
    finally:
        with saas_db.begin() as conn:
            conn.execute(
                text("DELETE FROM models WHERE id = ANY(:ids)"), {"ids": [c["key"] for c in models.configs.values()]}
            )


@pytest.fixture(scope="module")
def admin(saas_web: InvokeAIWebServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(saas_web.url)}"}


def _get(web: InvokeAIWebServer, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.get(f"{web.url}{MODELS}{path}", params=params, headers=headers, timeout=60)


def _listed(web: InvokeAIWebServer, catalogue: Catalogue, headers: dict[str, str], **params: Any) -> set[str]:
    r = _get(web, "/", headers, **params)
    assert r.status_code == 200, r.text
    return catalogue.ours(r.json()["models"])


def _sees(web: InvokeAIWebServer, catalogue: Catalogue, headers: dict[str, str], name: str) -> bool:
    """Whether every lookup route answers the record (and all agree)."""
    config = catalogue.configs[name]
    by_key = _get(web, f"/i/{config['key']}", headers)
    by_attrs = _get(web, "/get_by_attrs", headers, name=config["name"], type=config["type"], base=config["base"])
    missing = _get(web, "/missing", headers)
    assert missing.status_code == 200, missing.text
    answers = {
        by_key.status_code == 200 and by_key.json()["key"] == config["key"],
        by_attrs.status_code == 200 and by_attrs.json()["key"] == config["key"],
        name in catalogue.ours(missing.json()["models"]),  # the paths do not exist: every record is "missing"
        name in _listed(web, catalogue, headers),
    }
    assert len(answers) == 1, f"the routes disagree about {name}"
    for r in (by_key, by_attrs):
        assert r.status_code in (200, 404), r.text
    return answers.pop()


def test_each_plan_sees_the_bases_it_includes(
    saas_web: InvokeAIWebServer, saas_db: Engine, catalogue: Catalogue, admin: dict[str, str]
) -> None:
    user_id, user = saas_user(saas_web, "models-trial")
    _, other = saas_user(saas_web, "models-other")
    sd_and_any = {"sdxl-main", "t5"}
    everything = set(catalogue.configs)
    assert _listed(saas_web, catalogue, user) == sd_and_any
    assert _listed(saas_web, catalogue, user, base_models=["flux", "sdxl", "flux"]) == {"sdxl-main"}
    assert _listed(saas_web, catalogue, user, base_models="flux") == set()
    assert _listed(saas_web, catalogue, user, model_type="lora") == set()
    assert [_sees(saas_web, catalogue, user, name) for name in ("flux-main", "flux-lora", "sd3-main")] == [False] * 3
    assert _sees(saas_web, catalogue, user, "sdxl-main") and _sees(saas_web, catalogue, user, "t5")

    set_plan(saas_db, user_id, "starter")
    assert _listed(saas_web, catalogue, user) == sd_and_any | {"flux-main", "flux-lora"}
    assert _sees(saas_web, catalogue, user, "flux-lora") and not _sees(saas_web, catalogue, user, "sd3-main")
    set_plan(saas_db, user_id, "pro")  # an upgrade shows at once
    assert _listed(saas_web, catalogue, user) == everything
    assert all(_sees(saas_web, catalogue, user, name) for name in everything)

    # One user's plan is theirs alone: another Trial user still sees no FLUX model.
    assert _listed(saas_web, catalogue, other) == sd_and_any
    # Administrators manage the catalogue: they see every model, whatever their plan.
    assert _listed(saas_web, catalogue, admin) == everything
    assert all(_sees(saas_web, catalogue, admin, name) for name in everything)
    # Anonymous callers get stock's 401, before any plan is read.
    assert httpx.get(f"{saas_web.url}{MODELS}/", timeout=30).status_code == 401


def test_an_excluded_model_reads_as_a_missing_one(
    saas_web: InvokeAIWebServer, catalogue: Catalogue, admin: dict[str, str]
) -> None:
    _, user = saas_user(saas_web, "models-probe")
    flux = catalogue.configs["flux-main"]
    hidden, absent = _get(saas_web, f"/i/{flux['key']}", user), _get(saas_web, f"/i/{uuid.uuid4()}", user)
    assert (hidden.status_code, hidden.json()) == (absent.status_code, absent.json()) == (404, absent.json())
    hidden = _get(saas_web, "/get_by_attrs", user, name=flux["name"], type="main", base="flux")
    absent = _get(saas_web, "/get_by_attrs", user, name=f"absent-{uuid.uuid4()}", type="main", base="sdxl")
    assert (hidden.status_code, hidden.json()) == (absent.status_code, absent.json()) == (404, absent.json())
    # The FLUX and SDXL records share a hash: stock answers the first installed (FLUX); a Trial user gets SDXL.
    assert _get(saas_web, "/get_by_hash", user, hash=flux["hash"]).json()["key"] == catalogue.key("sdxl-main")
    assert _get(saas_web, "/get_by_hash", admin, hash=flux["hash"]).json()["key"] == flux["key"]
    hidden = _get(saas_web, "/get_by_hash", user, hash=catalogue.configs["flux-lora"]["hash"])
    absent = _get(saas_web, "/get_by_hash", user, hash=f"blake3:{uuid.uuid4()}")
    assert (hidden.status_code, hidden.json()) == (absent.status_code, absent.json()) == (404, absent.json())
    for r in (hidden, absent):
        assert "Traceback" not in r.text and "saas-test-absent" not in r.text


def _enqueue(web: InvokeAIWebServer, headers: dict[str, str], nodes: dict[str, Any]) -> httpx.Response:
    body = {"prepend": False, "batch": {"graph": {"id": "g", "nodes": nodes, "edges": []}, "runs": 1}}
    return httpx.post(f"{web.url}/api/v1/queue/{Q}/enqueue_batch", json=body, headers=headers, timeout=60)


def _queued(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        statement = text("SELECT count(*) FROM session_queue WHERE user_id = :u")
        return int(conn.execute(statement, {"u": user_id}).scalar_one())


def test_every_model_a_graph_uses_counts_at_enqueue(
    saas_web: InvokeAIWebServer, saas_db: Engine, catalogue: Catalogue
) -> None:
    user_id, user = saas_user(saas_web, "models-enqueue")
    lora = {"lora": {"id": "lora", "type": "lora_loader", "lora": catalogue.identifier("flux-lora"), "weight": 0.75}}
    graphs = {
        "a LoRA loader's model": lora,
        "a LoRA inside a collection": {
            "loras": {
                "id": "loras",
                "type": "lora_collection_loader",
                "loras": [{"lora": catalogue.identifier("flux-lora"), "weight": 0.5}],
            }
        },
        # A worker loads by key alone: an identifier claiming an SD base for a FLUX key is judged by the record.
        "a FLUX key under an SD base": {
            "lora": {**lora["lora"], "lora": catalogue.identifier("flux-lora", base="sd-1", name="innocent")}
        },
    }
    for what, nodes in graphs.items():
        r = _enqueue(saas_web, user, nodes)
        assert r.status_code == 403, f"{what}: {r.text}"
        detail = r.json()["detail"]
        assert "Your plan (Trial) does not include flux models" in detail and "/api/v1/saas/plans" in detail, detail
        assert "Traceback" not in r.text
    assert _queued(saas_db, user_id) == 0
    balance = CreditLedger(saas_db).balance(user_id)
    assert (balance.available, balance.held) == (500, 0)  # refused graphs hold nothing
    # Models of base "any" are in every plan (the item fails on the worker for want of an image: no matter).
    upscale = {
        "up": {"id": "up", "type": "spandrel_image_to_image", "image_to_image_model": catalogue.identifier("t5")}
    }
    assert _enqueue(saas_web, user, upscale).status_code == 200, "an 'any' model is refused"

    set_plan(saas_db, user_id, "starter")
    assert _enqueue(saas_web, user, lora).status_code == 200  # Starter includes FLUX...
    sd3 = {"model": {"id": "model", "type": "sd3_model_loader", "model": catalogue.identifier("sd3-main")}}
    r = _enqueue(saas_web, user, sd3)  # ...but not SD 3
    assert r.status_code == 403 and "Your plan (Starter) does not include sd-3 models" in r.json()["detail"], r.text


def test_the_overrides_keep_the_stock_contract(saas_web: InvokeAIWebServer) -> None:
    """Same path, method, operation id, parameters and responses as stock's routes, as served; the description
    alone differs (it says the plan filters the answer)."""
    app = FastAPI()
    app.include_router(model_manager_router, prefix="/api")
    stock = app.openapi()["paths"]
    served = httpx.get(f"{saas_web.url}/openapi.json", timeout=30).json()["paths"]
    overridden = {(path, method) for route in models_router.routes for path, method in _operations(route)}
    assert len(overridden) == 5
    for path, method in overridden:
        ours, theirs = dict(served[path][method]), dict(stock[path][method])
        assert "plan" in ours.pop("description") and "plan" not in theirs.pop("description")
        assert ours == theirs, path


def _operations(route: Any) -> list[tuple[str, str]]:
    return [(f"/api{route.path}", method.lower()) for method in route.methods]
