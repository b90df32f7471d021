"""The benchmark's data set, as plain rows both backends receive unchanged.

Everything is derived from one seeded ``random.Random``, so the SQLite and the PostgreSQL side get the very same
users, boards, images, board memberships and workflows, in the same order, with the same names and timestamps.
Rows are tuples (not objects): at full size there are 200,000 images and memory matters more than names.

The first ``sample_users`` users are *service-seeded*: their rows are written through the real record services
(which choose their own ids and timestamps), so the sample proves both backends' services write what the routes
then read. Every other row is bulk-inserted with SQL, because per-row service calls would take far too long at
full size. ``Dataset.bulk_*`` and ``Dataset.sample_*`` split the rows that way.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field

__all__ = ["BENCH_PASSWORD", "ADMIN_EMAIL", "Dataset", "ImageRow", "Scale", "build_dataset", "workflow_json"]

# Meets InvokeAI's strict password rules (length, upper, lower, digit), so the services accept it as is.
BENCH_PASSWORD = "Bench-password-2024"
ADMIN_EMAIL = "bench-admin@example.com"

# Bulk rows get timestamps from here on, one second apart: distinct, so every ORDER BY is the same on both sides.
_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# (image_name, user_index, created_at, starred, board_index or -1, metadata)
ImageRow = tuple[str, int, dt.datetime, bool, int, str]


@dataclass(frozen=True)
class Scale:
    """How much data to seed. ``sample_users`` of the ``users`` go through the services, the rest through SQL."""

    users: int
    images: int
    boards_per_user: int
    workflows_per_user: int
    sample_users: int = 3
    on_board_fraction: float = 0.75
    starred_fraction: float = 0.05

    def describe(self) -> str:
        return (
            f"{self.users:,} users, {self.images:,} images, {self.users * self.boards_per_user:,} boards, "
            f"{self.users * self.workflows_per_user:,} workflows"
        )


@dataclass
class Dataset:
    """The logical data set. Users and boards are addressed by index: their ids are per backend (the services
    choose ids for the sample), so seeding returns the id maps (see ``_bench_seed.SeededIds``)."""

    scale: Scale
    emails: list[str]
    user_times: list[dt.datetime]
    # boards[user_index] = [(board_name, created_at), ...]
    boards: list[list[tuple[str, dt.datetime]]]
    images: list[ImageRow]
    # workflows[user_index] = [(workflow_id, name, created_at), ...]
    workflows: list[list[tuple[str, str, dt.datetime]]]
    images_by_user: list[list[int]] = field(default_factory=list)  # indexes into ``images``

    @property
    def sample_users(self) -> range:
        return range(min(self.scale.sample_users, self.scale.users))

    @property
    def bulk_users(self) -> range:
        return range(len(self.sample_users), self.scale.users)

    def is_sampled(self, user_index: int) -> bool:
        return user_index < len(self.sample_users)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _metadata(rng: random.Random, index: int) -> str:
    """A small generation-metadata JSON string, the size real images carry (a few hundred bytes)."""
    seed = rng.getrandbits(31)
    return (
        '{"generation_mode": "txt2img", "positive_prompt": "a benchmark photo of a lighthouse at dusk, number '
        f'{index}", "negative_prompt": "", "width": 512, "height": 512, "seed": {seed}, "steps": 30, '
        '"cfg_scale": 7.5, "scheduler": "euler", "model": {"key": "bench-model", "name": "bench", "base": "sd-1"}}'
    )


def workflow_json(workflow_id: str | None, name: str) -> dict[str, object]:
    """A user workflow with two nodes and an edge: valid for InvokeAI's ``Workflow`` model, and enough structure
    that the list route's per-workflow compatibility check does real work, as it does for users' workflows."""
    nodes: list[dict[str, object]] = [
        {
            "id": node_id,
            "type": "invocation",
            "position": {"x": x, "y": 0},
            "data": {
                "id": node_id,
                "type": "add",
                "version": "1.0.1",
                "label": "",
                "notes": "",
                "isOpen": True,
                "isIntermediate": True,
                "useCache": True,
                "nodePack": "invokeai",
                "inputs": {
                    "a": {"name": "a", "label": "", "value": 1},
                    "b": {"name": "b", "label": "", "value": 2},
                },
            },
        }
        for node_id, x in (("n1", 0), ("n2", 300))
    ]
    workflow: dict[str, object] = {
        "name": name,
        "author": "bench",
        "description": f"{name}: adds numbers",
        "version": "1.0.0",
        "contact": "",
        "tags": "bench, math",
        "notes": "",
        "exposedFields": [{"nodeId": "n1", "fieldName": "a"}],
        "meta": {"version": "3.0.0", "category": "user"},
        "nodes": nodes,
        "edges": [
            {
                "id": "e1",
                "type": "default",
                "source": "n1",
                "target": "n2",
                "sourceHandle": "value",
                "targetHandle": "a",
            }
        ],
        "form": None,
    }
    if workflow_id is not None:
        workflow["id"] = workflow_id
    return workflow


def build_dataset(scale: Scale, seed: int = 20240601) -> Dataset:
    """Build the rows. Images are dealt to users evenly (the realistic case: many users, each with a gallery);
    ``on_board_fraction`` of each user's images sit on one of that user's boards, the rest are uncategorized."""
    rng = random.Random(seed)
    clock = iter(_EPOCH + dt.timedelta(seconds=i) for i in range(10**9))
    emails = [f"bench-user-{i:05d}@example.com" for i in range(scale.users)]
    user_times = [next(clock) for _ in range(scale.users)]
    boards = [
        [(f"Board {b + 1} of user {u}", next(clock)) for b in range(scale.boards_per_user)] for u in range(scale.users)
    ]
    workflows = [
        [(_uuid(rng), f"Workflow {w + 1} of user {u}", next(clock)) for w in range(scale.workflows_per_user)]
        for u in range(scale.users)
    ]
    images: list[ImageRow] = []
    images_by_user: list[list[int]] = [[] for _ in range(scale.users)]
    for i in range(scale.images):
        user = i % scale.users
        on_board = scale.boards_per_user > 0 and rng.random() < scale.on_board_fraction
        board = rng.randrange(scale.boards_per_user) if on_board else -1
        starred = rng.random() < scale.starred_fraction
        images_by_user[user].append(len(images))
        images.append((f"{_uuid(rng)}.png", user, next(clock), starred, board, _metadata(rng, i)))
    return Dataset(
        scale=scale,
        emails=emails,
        user_times=user_times,
        boards=boards,
        images=images,
        workflows=workflows,
        images_by_user=images_by_user,
    )
