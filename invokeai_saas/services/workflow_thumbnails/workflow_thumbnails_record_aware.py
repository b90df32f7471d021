"""Workflow thumbnails on disk, with a URL lookup that does not query the database again.

Stock's ``get_url`` reads the workflow record to learn whether it is a default workflow (whose
thumbnail ships with InvokeAI) — one query per listed workflow. The workflow list already holds the
records, so ``get_url_for_record`` takes the category from there and is otherwise stock's logic.
"""

from __future__ import annotations

from pathlib import Path

from invokeai.app.services.workflow_records.workflow_records_common import WorkflowCategory, WorkflowRecordDTO
from invokeai.app.services.workflow_thumbnails import workflow_thumbnails_disk
from invokeai.app.services.workflow_thumbnails.workflow_thumbnails_disk import WorkflowThumbnailFileStorageDisk
from invokeai.app.util.misc import uuid_string

DEFAULT_THUMBNAILS_DIR = Path(workflow_thumbnails_disk.__file__).parent / "default_workflow_thumbnails"


class RecordAwareWorkflowThumbnailFileStorage(WorkflowThumbnailFileStorageDisk):
    def __init__(self, thumbnails_folder: Path) -> None:
        super().__init__(thumbnails_folder)
        self._folder = thumbnails_folder

    def get_url_for_record(self, record: WorkflowRecordDTO, with_hash: bool = True) -> str | None:
        if record.workflow.meta.category is WorkflowCategory.Default:
            path = DEFAULT_THUMBNAILS_DIR / (record.workflow_id + ".png")
        else:
            path = self._folder / (record.workflow_id + ".webp")
        if not self._validate_path(path):
            return None
        url = self._invoker.services.urls.get_workflow_thumbnail_url(record.workflow_id)
        # As stock: the URL never changes, so a random query string defeats caching.
        return f"{url}?{uuid_string()}" if with_hash else url
