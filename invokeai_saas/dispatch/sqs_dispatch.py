"""Dispatch messages over SQS: one standard queue per scheduling tier, and a dead-letter queue behind them.

A message says "an item of this tier became runnable" and names it (item id, owner). Which item a worker then
runs is decided by the claim in PostgreSQL (see ``invokeai_saas.services.session_queue.session_queue_worker``):
highest tier first, round robin across users as stock does, within each user's running cap. Messages are
therefore interchangeable within a tier, which is what makes every SQS hazard harmless: a duplicate delivery
claims nothing (or the next item, whose own message then claims nothing), and a message that reappears after
its worker died claims the item the reaper put back.

The owner is the message's ``MessageGroupId``: on AWS that turns on SQS fair queues for standard queues, so
one tenant's backlog does not delay the messages of others. A message received ``sqs_max_receives`` times
(workers died holding it each time) moves to the dead-letter queue, where operators can inspect it; the items
themselves are never lost with it, because the reaper re-dispatches every item it puts back.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from invokeai_saas.aws import sqs_client
from invokeai_saas.config import SaasSettings

logger = logging.getLogger("invokeai_saas.dispatch")

SQS_BATCH_LIMIT = 10


class DispatchUnavailable(RuntimeError):
    """SQS could not be reached or refused the call; the message says which operation."""


@dataclass(frozen=True)
class Runnable:
    """An item that became runnable: what a dispatch message carries."""

    item_id: int
    user_id: str
    queue_id: str
    tier: int


@dataclass(frozen=True)
class DispatchToken:
    """A received dispatch message; ``receipt_handle`` is what extends, releases or deletes it."""

    tier: int
    item_id: int | None
    user_id: str | None
    receipt_handle: str
    receive_count: int


class SqsDispatcher:
    """Sends, receives, extends and deletes dispatch messages. Queues are created on first use (idempotent)."""

    def __init__(self, settings: SaasSettings, client: Any | None = None) -> None:
        self._settings = settings
        self._client = client if client is not None else sqs_client(settings)
        self._urls: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def tiers(self) -> range:
        return range(self._settings.scheduling_tiers)

    def queue_name(self, tier: int) -> str:
        return f"{self._settings.sqs_queue_prefix}-tier-{tier}"

    @property
    def dead_letter_queue_name(self) -> str:
        return f"{self._settings.sqs_queue_prefix}-dead-letter"

    def ensure_queues(self) -> dict[int, str]:
        """Create the dead-letter queue and one queue per tier (CreateQueue is idempotent for equal attributes)."""
        with self._lock:
            if len(self._urls) == len(self.tiers):
                return dict(self._urls)
            try:
                dlq_url = self._client.create_queue(QueueName=self.dead_letter_queue_name)["QueueUrl"]
                dlq_arn = self._client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"]
                max_receives = self._settings.sqs_max_receives
                redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
                for tier in self.tiers:
                    self._urls[tier] = self._client.create_queue(
                        QueueName=self.queue_name(tier),
                        Attributes={
                            "VisibilityTimeout": str(self._settings.sqs_visibility_timeout),
                            "RedrivePolicy": redrive,
                        },
                    )["QueueUrl"]
            except (BotoCoreError, ClientError) as e:
                raise DispatchUnavailable(f"SQS: cannot create the dispatch queues ({type(e).__name__})") from e
            return dict(self._urls)

    def _url(self, tier: int) -> str:
        if tier not in self.tiers:
            raise ValueError(f"tier {tier} is outside 0..{len(self.tiers) - 1}")
        return self._urls.get(tier) or self.ensure_queues()[tier]

    def send(self, runnables: Iterable[Runnable]) -> None:
        """One message per runnable item, in batches of ten per tier."""
        by_tier: dict[int, list[Runnable]] = {}
        for runnable in runnables:
            by_tier.setdefault(runnable.tier, []).append(runnable)
        for tier, items in by_tier.items():
            url = self._url(tier)
            for start in range(0, len(items), SQS_BATCH_LIMIT):
                chunk = items[start : start + SQS_BATCH_LIMIT]
                entries = [
                    {
                        "Id": str(index),
                        "MessageBody": json.dumps(
                            {"item_id": r.item_id, "user_id": r.user_id, "queue_id": r.queue_id, "tier": r.tier}
                        ),
                        "MessageGroupId": r.user_id,
                    }
                    for index, r in enumerate(chunk)
                ]
                try:
                    result = self._client.send_message_batch(QueueUrl=url, Entries=entries)
                except (BotoCoreError, ClientError) as e:
                    raise DispatchUnavailable(f"SQS: cannot send dispatch messages ({type(e).__name__})") from e
                if result.get("Failed"):
                    codes = sorted({f.get("Code", "?") for f in result["Failed"]})
                    raise DispatchUnavailable(f"SQS refused {len(result['Failed'])} dispatch message(s): {codes}")

    def receive(self, tiers: Sequence[int], wait_seconds: int = 0) -> DispatchToken | None:
        """The next message of the highest tier that has one (``tiers`` in the order to try), or None.

        Each tier is polled without waiting first, so a higher tier's message is never passed over while this
        worker waits on a lower one; ``wait_seconds`` then long-polls the last tier in the list.
        """
        for position, tier in enumerate(tiers):
            wait = wait_seconds if position == len(tiers) - 1 else 0
            try:
                messages = self._client.receive_message(
                    QueueUrl=self._url(tier),
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=wait,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
            except (BotoCoreError, ClientError) as e:
                raise DispatchUnavailable(f"SQS: cannot receive dispatch messages ({type(e).__name__})") from e
            if messages:
                return self._token(tier, messages[0])
        return None

    @staticmethod
    def _token(tier: int, message: dict[str, Any]) -> DispatchToken:
        try:
            body = json.loads(message.get("Body") or "{}")
            item_id = int(body["item_id"]) if body.get("item_id") is not None else None
            user_id = str(body["user_id"]) if body.get("user_id") is not None else None
        except (ValueError, TypeError, KeyError):
            # A foreign or damaged message still counts as "something of this tier is runnable".
            item_id, user_id = None, None
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        return DispatchToken(tier, item_id, user_id, message["ReceiptHandle"], count)

    def extend(self, token: DispatchToken) -> None:
        """Hide the message for another visibility timeout (the running worker's beat)."""
        self._change_visibility(token, self._settings.sqs_visibility_timeout)

    def release(self, token: DispatchToken, delay_seconds: int = 0) -> None:
        """Make the message visible again (after ``delay_seconds``), for another worker to take."""
        self._change_visibility(token, delay_seconds)

    def _change_visibility(self, token: DispatchToken, seconds: int) -> None:
        try:
            self._client.change_message_visibility(
                QueueUrl=self._url(token.tier), ReceiptHandle=token.receipt_handle, VisibilityTimeout=seconds
            )
        except (BotoCoreError, ClientError) as e:
            raise DispatchUnavailable(f"SQS: cannot change a message's visibility ({type(e).__name__})") from e

    def delete(self, token: DispatchToken) -> None:
        try:
            self._client.delete_message(QueueUrl=self._url(token.tier), ReceiptHandle=token.receipt_handle)
        except (BotoCoreError, ClientError) as e:
            raise DispatchUnavailable(f"SQS: cannot delete a dispatch message ({type(e).__name__})") from e

    def approximate_backlog(self) -> dict[int, int]:
        """Messages per tier, visible or held by a worker (SQS's approximate counts)."""
        counts: dict[int, int] = {}
        for tier in self.tiers:
            try:
                attributes = self._client.get_queue_attributes(
                    QueueUrl=self._url(tier),
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
            except (BotoCoreError, ClientError) as e:
                raise DispatchUnavailable(f"SQS: cannot read queue attributes ({type(e).__name__})") from e
            counts[tier] = int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
                attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
            )
        return counts
