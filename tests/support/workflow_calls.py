"""What stock's runner records on a parent queue item when its ``call_saved_workflow`` node calls a saved workflow,
before it queues the child: for tests that drive the session queue's workflow-call paths without a runner."""

from __future__ import annotations

from invokeai.app.services.session_queue.session_queue_common import SessionQueueItem
from invokeai.app.services.shared.graph import WorkflowCallExecution


def park_on_a_call(parent: SessionQueueItem) -> None:
    parent.session.waiting_workflow_call_execution = WorkflowCallExecution(
        id=f"call-{parent.item_id}",
        parent_session_id=parent.session_id,
        prepared_call_node_id="call",
        source_call_node_id="call",
        workflow_id="saved-wf",
        depth=1,
        status="waiting_for_child",
    )
