"""Model configs and record stores shared by the model_records and model_relationship_records suites."""

from __future__ import annotations

import logging
from typing import Any

from invokeai.app.services.model_records.model_records_base import ModelRecordServiceBase
from invokeai.app.services.model_records.model_records_sql import ModelRecordServiceSQL
from invokeai.backend.model_manager.configs.textual_inversion import TI_File_SD1_Config

from invokeai_saas.services.model_records.model_records_postgres import ModelRecordServicePostgres
from tests.services.conftest import Backend

LOGGER_NAME = "test-model-records"


def model_store(backend: Backend) -> ModelRecordServiceBase:
    logger = logging.getLogger(LOGGER_NAME)
    if backend.is_postgres:
        return ModelRecordServicePostgres(backend.engine, logger=logger)
    return ModelRecordServiceSQL(backend.db, logger)


def common_fields(key: str, name: str, path: str, file_size: int = 10, hash: str | None = None) -> dict[str, Any]:
    """The fields every model config requires."""
    return {
        "key": key,
        "name": name,
        "path": path,
        "file_size": file_size,
        "hash": hash or f"blake3:{key}",
        "source": path,
        "source_type": "path",
    }


def ti(key: str, name: str = "embed", path: str | None = None, **fields: Any) -> TI_File_SD1_Config:
    """A textual-inversion (embedding) config: the smallest real model config."""
    return TI_File_SD1_Config(**{**common_fields(key, name, path or f"/models/{key}.safetensors"), **fields})
