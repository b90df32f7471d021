"""A tiny, randomly initialised SD 1.x model for running real txt2img graphs on the CPU: build it, install it into
any running InvokeAI through its real API, and describe the txt2img batch to enqueue with it.

Every function here stands on its own (a directory, a base URL and headers, a model identifier), so API servers,
workers and benchmarks can share them without sharing a server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

MAKE_TINY_SD = Path(__file__).with_name("make_tiny_sd.py")

# What ``save_pretrained`` writes for the pipeline; a directory holding all of them is a finished build.
BUILD_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
IDENTIFIER_FIELDS = ("key", "hash", "name", "base", "type")
INSTALL_DONE = ("completed", "error", "cancelled")
BUILD_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def is_complete_build(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in BUILD_FILES)


def build_tiny_sd(model_dir: Path, *, full: bool = False, timeout: float = 600) -> Path:
    """Build the model into ``model_dir`` unless a complete build is already there; returns ``model_dir``.

    The build runs in a process of its own (it loads torch and seeds its global RNG) and writes into a sibling
    staging directory that is renamed into place only when finished, so an interrupted or concurrent build never
    leaves a half-written model where an installer would probe it. The directory's name becomes the model's name.
    """
    if is_complete_build(model_dir):
        return model_dir
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = model_dir.with_name(f".{model_dir.name}.{uuid.uuid4().hex[:8]}.partial")
    command = [sys.executable, str(MAKE_TINY_SD), str(staging), *(["--full"] if full else [])]
    try:
        done = subprocess.run(
            command, env={**os.environ, **BUILD_ENV}, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0 or not is_complete_build(staging):
            raise RuntimeError(f"building the tiny SD model failed ({done.returncode}): {done.stderr[-2000:]}")
        if model_dir.exists() and not is_complete_build(model_dir):
            shutil.rmtree(model_dir)  # the leftovers of a build that did not use a staging directory
        try:
            staging.rename(model_dir)
        except OSError:
            if not is_complete_build(model_dir):  # anything but a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir


def _identifier(config: Mapping[str, Any]) -> dict[str, Any]:
    return {field: config[field] for field in IDENTIFIER_FIELDS}


def _installed_at(client: httpx.Client, model_dir: Path) -> dict[str, Any] | None:
    """The main model already registered from ``model_dir``, if any: installing the same directory twice is an
    error in stock InvokeAI, and processes sharing one database (API servers, workers) share its records."""
    r = client.get("/api/v2/models/", params={"model_type": "main", "model_name": model_dir.name})
    r.raise_for_status()
    wanted = model_dir.resolve()
    for config in r.json()["models"]:
        if Path(config["path"]).resolve() == wanted:
            return _identifier(config)
    return None


def install_tiny_sd(
    base_url: str, headers: Mapping[str, str], model_dir: Path, *, timeout: float = 180
) -> dict[str, Any]:
    """Install the built model in place through the real model-install API (``headers`` must carry an admin's
    bearer token where the server has users), wait until the install job has finished, and return the model's
    identifier (key, hash, name, base, type). A model already registered from ``model_dir`` is returned as is."""
    with httpx.Client(base_url=base_url, headers=dict(headers), timeout=30) as client:
        existing = _installed_at(client, model_dir)
        if existing is not None:
            return existing
        r = client.post("/api/v2/models/install", params={"source": str(model_dir), "inplace": "true"}, json={})
        if r.status_code != 201:
            raise RuntimeError(f"model install refused ({r.status_code}): {r.text[:500]}")
        job_id = r.json()["id"]
        deadline = time.monotonic() + timeout
        while True:
            job = client.get(f"/api/v2/models/install/{job_id}").json()
            if job["status"] in INSTALL_DONE:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"model install job {job_id} still {job['status']} after {timeout} s")
            time.sleep(0.2)
    if job["status"] != "completed" or not job.get("config_out"):
        raise RuntimeError(f"model install job {job_id} ended {job['status']}: {job.get('error_reason')}")
    return _identifier(job["config_out"])


def txt2img_graph(
    model: Mapping[str, Any], *, steps: int = 2, size: int = 64, seed: int = 1, prompt: str = "a red fox in the snow"
) -> dict[str, Any]:
    """The graph the linear UI builds for SD 1.x txt2img: model loader → compel (positive and negative) → noise →
    denoise_latents → l2i. Only l2i is not intermediate, so each run saves exactly one image, owned by whoever
    enqueued it."""
    edges = [
        (("model", "clip"), ("pos", "clip")),
        (("model", "clip"), ("neg", "clip")),
        (("model", "unet"), ("den", "unet")),
        (("model", "vae"), ("l2i", "vae")),
        (("pos", "conditioning"), ("den", "positive_conditioning")),
        (("neg", "conditioning"), ("den", "negative_conditioning")),
        (("noise", "noise"), ("den", "noise")),
        (("den", "latents"), ("l2i", "latents")),
    ]
    return {
        "id": f"txt2img-{uuid.uuid4().hex[:8]}",
        "nodes": {
            "model": {"id": "model", "type": "main_model_loader", "model": dict(model)},
            "pos": {"id": "pos", "type": "compel", "prompt": prompt},
            "neg": {"id": "neg", "type": "compel", "prompt": ""},
            "noise": {"id": "noise", "type": "noise", "seed": seed, "width": size, "height": size},
            "den": {
                "id": "den",
                "type": "denoise_latents",
                "steps": steps,
                "cfg_scale": 7.5,
                "scheduler": "euler",
                "denoising_start": 0,
                "denoising_end": 1,
            },
            "l2i": {"id": "l2i", "type": "l2i", "is_intermediate": False},
        },
        "edges": [
            {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}
            for (s, sf), (d, df) in edges
        ],
    }


def txt2img_batch(
    model: Mapping[str, Any], steps: int = 2, size: int = 64, runs: int = 1, seed: int = 1
) -> dict[str, Any]:
    """An ``enqueue_batch`` body running the txt2img graph ``runs`` times (one queue item each)."""
    return {
        "prepend": False,
        "batch": {"graph": txt2img_graph(model, steps=steps, size=size, seed=seed), "runs": runs},
    }
