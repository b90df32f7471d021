"""The cost estimate held at enqueue: how many GPU-seconds one queue item of a batch will likely take.

Only the hold uses it; the charge is the measured GPU time. A good estimate keeps holds close to charges, so users
are neither refused for credits they have nor left with debt. The model, per queue item:

    seconds = overhead + Σ over denoising nodes: steps × (width × height / 512²) × step_seconds[model base]
                       + Σ over the other nodes: node_seconds[node type]

- a denoising node is any node with a ``steps`` (or ``num_steps``) input: stock's SD, SDXL, SD3, FLUX, CogView,
  Z-Image... denoisers all have one; ``denoising_start``/``denoising_end`` shrink the steps actually run;
- width and height come from the denoising node when it has them, else from the largest ``width`` and ``height``
  of the graph's generation nodes (denoisers and ``noise``; a resize or crop is not a generation size), else 512;
- the model base comes from the graph's main model (``sd-1``, ``sdxl``, ``flux``...);
- ``model_bases`` and ``model_keys`` name every model the graph's nodes identify, main or not (LoRAs, ControlNets,
  VAEs, encoders; also identifiers nested in field values such as a LoRA list or a UNet field): the plan's model
  access limit applies to all of them (``invokeai_saas.credits.limits``), not to the main model alone;
- batch data that sets steps, width or height counts with its largest value (one estimate per batch).

- step-less nodes that still take a while (upscalers, video, image processors, segmentation, captioning) cost what
  ``node_seconds`` gives their type each; a graph of nothing but those (an upscale, a video concat) used to hold
  only the overhead.

``credit_estimate_overhead_seconds``, ``credit_estimate_step_seconds`` and ``credit_estimate_node_seconds``
(settings) tune it per deployment; the defaults are modest GPU figures. The plan's ``credit_multiplier`` applies on
top, as at settlement. The hold is still an estimate: what really stops a long run is the spending cap
(``invokeai_saas.credits.cap``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from invokeai.app.invocations.model import ModelIdentifierField
from invokeai.app.services.session_queue.session_queue_common import Batch
from pydantic import BaseModel

from invokeai_saas.credits.ledger import credits_for

REFERENCE_PIXELS = 512 * 512
DEFAULT_BASE = "default"
ANY_BASE = "any"  # models that belong to no one family (CLIP and T5 encoders...): every plan may use them
# How deep into a node's field values model identifiers are looked for: stock nests them two levels down at most
# (a LoRA list's ``LoRAField.lora``, a ``UNetField``'s ``loras[i].lora``); the bound keeps a hostile graph from
# making the walk expensive.
MAX_FIELD_DEPTH = 6


@dataclass(frozen=True)
class CostEstimate:
    seconds: float
    model_base: str | None
    steps: int
    width: int
    height: int
    # The bases the graph's model identifiers claim, ``any`` left out, and their keys. A worker loads a model by its
    # key alone, so the claimed base is only the client's word: the plan check also reads each key's recorded base.
    model_bases: frozenset[str] = frozenset()
    model_keys: frozenset[str] = frozenset()

    def credits(self, multiplier: float) -> int:
        """At least one credit per item: even a graph without a model occupies a worker."""
        return max(1, credits_for(self.seconds, multiplier))


def _field(node: Any, name: str) -> Any:
    return getattr(node, name, None)


def _batch_values(batch: Batch | None, name: str, node_ids: set[str] | None = None) -> list[Any]:
    """The values batch data gives field ``name`` (of the nodes ``node_ids`` only, when given)."""
    values: list[Any] = []
    for group in (batch.data if batch is not None else None) or []:
        for datum in group:
            if datum.field_name == name and (node_ids is None or datum.node_path in node_ids):
                values.extend(datum.items)
    return values


def is_denoiser(node: Any) -> bool:
    """A node that denoises: it has ``steps`` (or ``num_steps``); stock's SD, SDXL, SD3, FLUX... denoisers all do."""
    fields = type(node).model_fields
    return "steps" in fields or "num_steps" in fields


def is_generation_node(node: Any) -> bool:
    """A node whose ``width``/``height`` is the size of what is generated: a denoiser, or ``noise`` (the latents an
    SD 1.x/SDXL denoiser starts from). Other nodes' sizes (resize, crop, ideal size, metadata, video dimension
    helpers) are not generation sizes."""
    return getattr(node, "type", None) == "noise" or is_denoiser(node)


def enum_value(enum_or_str: Any) -> str:
    """A taxonomy enum's value (``BaseModelType.Flux`` → ``"flux"``), or the string given."""
    return str(getattr(enum_or_str, "value", enum_or_str))


def _model_identifiers(value: Any, depth: int) -> Iterator[ModelIdentifierField]:
    """Every ``ModelIdentifierField`` in ``value`` (a node, or one of its field values), ``depth`` levels down."""
    if isinstance(value, ModelIdentifierField):
        yield value
        return
    if depth <= 0:
        return
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _model_identifiers(getattr(value, name, None), depth - 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _model_identifiers(item, depth - 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _model_identifiers(item, depth - 1)


def _ints(values: Iterable[Any]) -> list[int]:
    """The integers among ``values``, numeric strings included: batch data is kept as sent, and a node's integer
    field validates ``"4096"`` to 4096 when the item runs."""
    found: list[int] = []
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append(int(value))
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            found.append(int(value))
    return found


class CreditEstimator:
    def __init__(
        self,
        overhead_seconds: float,
        step_seconds: Mapping[str, float],
        node_seconds: Mapping[str, float] | None = None,
    ) -> None:
        self._overhead = overhead_seconds
        self._step_seconds = dict(step_seconds)
        self._node_seconds = dict(node_seconds or {})

    def estimate(self, batch: Batch) -> CostEstimate:
        return self.estimate_nodes(list(batch.graph.nodes.values()) if batch.graph is not None else [], batch)

    def estimate_nodes(self, nodes: Sequence[Any], batch: Batch | None = None) -> CostEstimate:
        """The estimate of ``nodes`` (a graph's, or one node as it is about to run) and ``batch``'s data, if any."""
        base = self._model_base(nodes)
        generation = [n for n in nodes if is_generation_node(n)]
        ids = {str(n.id) for n in generation}
        widths = _ints([_field(n, "width") for n in generation] + _batch_values(batch, "width", ids))
        heights = _ints([_field(n, "height") for n in generation] + _batch_values(batch, "height", ids))
        batch_steps = _ints(_batch_values(batch, "steps") + _batch_values(batch, "num_steps"))
        per_step = self._step_seconds.get(base or DEFAULT_BASE, self._step_seconds.get(DEFAULT_BASE, 0.2))
        seconds = self._overhead
        total_steps = 0
        width, height = max(widths, default=512), max(heights, default=512)
        for node in nodes:
            steps = _field(node, "steps") if _field(node, "steps") is not None else _field(node, "num_steps")
            if not isinstance(steps, int) or isinstance(steps, bool):
                seconds += self._node_seconds.get(str(getattr(node, "type", "")), 0.0)
                continue
            steps = max([steps, *batch_steps])
            start, end = _field(node, "denoising_start"), _field(node, "denoising_end")
            if isinstance(start, int | float) and isinstance(end, int | float) and 0 <= start < end <= 1:
                steps = max(1, round(steps * (end - start)))
            node_width = _field(node, "width") if isinstance(_field(node, "width"), int) else width
            node_height = _field(node, "height") if isinstance(_field(node, "height"), int) else height
            seconds += steps * (node_width * node_height / REFERENCE_PIXELS) * per_step
            total_steps += steps
        identifiers = [identifier for node in nodes for identifier in _model_identifiers(node, MAX_FIELD_DEPTH)]
        bases = frozenset(enum_value(i.base) for i in identifiers) - {ANY_BASE}
        keys = frozenset(i.key for i in identifiers)
        return CostEstimate(seconds, base, total_steps, width, height, bases, keys)

    @staticmethod
    def _model_base(nodes: Sequence[Any]) -> str | None:
        """The base of the graph's main model (the first one found)."""
        for node in nodes:
            for name in type(node).model_fields:
                value = getattr(node, name, None)
                base, kind = getattr(value, "base", None), getattr(value, "type", None)
                if base is not None and str(getattr(kind, "value", kind)) == "main":
                    return str(getattr(base, "value", base))
        return None
