"""The cost estimate and the generation size it reads (``invokeai_saas/credits/estimate.py``), on real stock
invocations validated from graph JSON: only denoisers and ``noise`` size a generation; batch data counts for those
nodes, numeric text included; every model identifier counts, however deep."""

from __future__ import annotations

from typing import Any

from invokeai.app.services.session_queue.session_queue_common import Batch

from invokeai_saas.credits.estimate import CreditEstimator

ESTIMATOR = CreditEstimator(1.0, {"default": 0.2, "sd-1": 0.1})


def _batch(nodes: dict[str, Any], data: list[list[dict[str, Any]]] | None = None) -> Batch:
    return Batch.model_validate({"graph": {"id": "g", "nodes": nodes, "edges": []}, "data": data, "runs": 1})


NOISE = {"id": "noise", "type": "noise", "seed": 1, "width": 768, "height": 512}
RESIZE = {"id": "resize", "type": "img_resize", "image": {"image_name": "x.png"}, "width": 4096, "height": 4096}


def test_only_generation_nodes_size_the_generation() -> None:
    estimate = ESTIMATOR.estimate(_batch({"noise": NOISE, "resize": RESIZE}))
    assert (estimate.width, estimate.height) == (768, 512)
    no_generation = ESTIMATOR.estimate(_batch({"resize": RESIZE}))
    assert (no_generation.width, no_generation.height) == (512, 512)  # the default


def test_batch_data_counts_for_generation_nodes_only_and_as_text_too() -> None:
    nodes = {"noise": NOISE, "resize": RESIZE}
    to_noise = [[{"node_path": "noise", "field_name": "width", "items": ["2048", "1024"]}]]
    assert ESTIMATOR.estimate(_batch(nodes, to_noise)).width == 2048
    to_resize = [[{"node_path": "resize", "field_name": "width", "items": [8192]}]]
    assert ESTIMATOR.estimate(_batch(nodes, to_resize)).width == 768


def test_seconds_follow_steps_pixels_and_the_model_base() -> None:
    model = {"key": "k1", "hash": "h", "name": "sd", "base": "sd-1", "type": "main"}
    lora = {"key": "k2", "hash": "h", "name": "fl", "base": "flux", "type": "lora"}
    nodes = {
        "model": {"id": "model", "type": "main_model_loader", "model": model},
        "lora": {"id": "lora", "type": "lora_loader", "lora": lora},
        "noise": {"id": "noise", "type": "noise", "seed": 1, "width": 1024, "height": 512},
        "denoise": {"id": "denoise", "type": "denoise_latents", "steps": 20},
    }
    estimate = ESTIMATOR.estimate(_batch(nodes))
    assert estimate.model_base == "sd-1" and estimate.model_bases == {"sd-1", "flux"}
    assert estimate.model_keys == {"k1", "k2"} and estimate.steps == 20
    assert abs(estimate.seconds - (1.0 + 20 * (1024 * 512 / 512**2) * 0.1)) < 1e-9  # overhead + steps × area × s
    assert estimate.credits(1.0) == 5 and estimate.credits(2.0) == 10  # rounded up, × the plan's multiplier


def test_step_less_nodes_cost_what_their_type_is_configured_to() -> None:
    """An upscale or a video concat has no steps: without a per-type figure it held only the overhead."""
    from invokeai_saas.config import DEFAULT_NODE_SECONDS, SaasSettings

    estimator = CreditEstimator(1.0, {"default": 0.2}, {"spandrel_image_to_image": 15.0, "img_blur": 0.5})
    upscale = {"id": "up", "type": "spandrel_image_to_image", "image": {"image_name": "x.png"}}
    blur = {"id": "blur", "type": "img_blur", "image": {"image_name": "x.png"}}
    assert estimator.estimate(_batch({"up": upscale, "blur": blur})).seconds == 1.0 + 15.0 + 0.5
    assert estimator.estimate(_batch({"up": upscale})).credits(2.0) == 32
    assert ESTIMATOR.estimate(_batch({"up": upscale})).seconds == 1.0  # not configured: the overhead alone
    assert SaasSettings().credit_estimate_node_seconds == DEFAULT_NODE_SECONDS
    assert DEFAULT_NODE_SECONDS["spandrel_image_to_image"] > 1 and "video_concat" in DEFAULT_NODE_SECONDS
