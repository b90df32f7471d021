"""Saas-mode settings: ``INVOKEAI_SAAS_*`` environment variables and a ``saas.yaml`` beside ``invokeai.yaml``.

Why a settings class of our own: InvokeAI refuses to start when ``invokeai.yaml`` holds a key it does
not know, so the overlay cannot add keys there. Environment variables win over the file, as they do
for InvokeAI's own settings. Secrets are ``SecretStr`` so they never reach a log line or a response.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "INVOKEAI_SAAS_"
SAAS_CONFIG_FILENAME = "saas.yaml"
CONFIG_FILE_ENV = "INVOKEAI_SAAS_CONFIG_FILE"


# The estimate of step-less nodes that take a while (``credit_estimate_node_seconds``), in GPU seconds at typical
# sizes. Denoisers are estimated from their steps instead; what stops a run that takes longer is the spending cap.
DEFAULT_NODE_SECONDS: dict[str, float] = {
    # upscalers
    "spandrel_image_to_image": 15.0,
    "spandrel_image_to_image_autoscale": 30.0,
    "esrgan": 15.0,
    "pid_upscale": 30.0,
    # video
    "video_concat": 10.0,
    "video_frame_extract": 5.0,
    "extract_video_range": 5.0,
    "wan_l2v": 20.0,
    "wan_i2l": 5.0,
    # segmentation, infill, captioning
    "segment_anything": 5.0,
    "grounding_dino": 5.0,
    "infill_lama": 5.0,
    "llava_onevision_vllm": 20.0,
    # control image processors
    "depth_anything_depth_estimation": 3.0,
    "dw_openpose_detection": 3.0,
    "hed_edge_detection": 2.0,
    "lineart_edge_detection": 2.0,
    "lineart_anime_edge_detection": 2.0,
    "mlsd_detection": 2.0,
    "normal_map": 2.0,
    "pidi_edge_detection": 2.0,
    "mediapipe_face_detection": 2.0,
    "face_identifier": 2.0,
    "face_mask_detection": 2.0,
    "face_off": 2.0,
}


class SaasConfigError(ValueError):
    """The saas configuration cannot be used; the message names the file or variable to fix."""


class SaasSettings(BaseSettings):
    """Every saas-mode setting. The README's settings table is generated from these descriptions."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    enabled: bool = Field(default=False, description="Turn saas mode on. Off: the package changes nothing.")

    # Database (PostgreSQL)
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL, e.g. postgresql+psycopg://user:pw@host:5432/db. Unset: InvokeAI's SQLite.",
    )
    database_pool_size: int = Field(default=10, ge=1, description="Pooled connections kept open per process.")
    database_max_overflow: int = Field(default=10, ge=0, description="Extra connections allowed above the pool.")

    # Events (Redis)
    redis_url: str | None = Field(default=None, description="Redis URL for Socket.IO fan-out, e.g. redis://:pw@host/0.")

    # Object store (S3 API)
    s3_bucket: str | None = Field(default=None, description="S3 bucket for media. Unset: InvokeAI's local disk.")
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint (SeaweedFS, MinIO, R2). Unset: AWS.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. 'prod/'.")
    s3_access_key_id: str | None = Field(default=None, description="S3 access key. Unset: the AWS default chain.")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    s3_serve_mode: Literal["stream", "redirect"] = Field(
        default="stream",
        description="How media routes deliver objects after the access check: stream through the API, or "
        "redirect to a short-lived presigned URL (the bucket then needs CORS for the studio's canvas).",
    )
    s3_presign_expires: int = Field(
        default=300, ge=10, le=604800, description="Seconds a presigned media URL stays valid (redirect mode)."
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint as browsers reach it, for presigned URLs (redirect mode). Unset: s3_endpoint_url.",
    )
    s3_cdn_base_url: str | None = Field(
        default=None,
        description="CDN base URL that serves the bucket (redirect mode): redirects go to it plus the object key.",
    )

    # Queue (SQS)
    sqs_endpoint_url: str | None = Field(default=None, description="SQS endpoint. Unset (with sqs_enabled): AWS.")
    sqs_enabled: bool = Field(default=False, description="Dispatch queue items over SQS (implied by sqs_endpoint_url).")
    sqs_region: str = Field(default="us-east-1", description="SQS region.")
    sqs_queue_prefix: str = Field(default="invokeai-saas", description="Prefix of the SQS queue names.")
    sqs_access_key_id: str | None = Field(default=None, description="SQS access key. Unset: the AWS default chain.")
    sqs_secret_access_key: SecretStr | None = Field(default=None, description="SQS secret key.")
    sqs_visibility_timeout: int = Field(
        default=60,
        ge=10,
        le=43200,
        description="Seconds a received dispatch message stays hidden; a running worker extends it on every beat.",
    )
    sqs_max_receives: int = Field(
        default=5, ge=2, le=1000, description="Receives after which SQS moves a message to the dead-letter queue."
    )

    # Scheduling and workers (with SQS)
    scheduling_tiers: int = Field(
        default=3, ge=1, le=10, description="Number of priority tiers (0 = lowest); one SQS queue each."
    )
    default_tier: int = Field(default=0, ge=0, description="Tier of users without a scheduling row (plans set it).")
    max_running_per_user: int | None = Field(
        default=2, ge=1, description="Items one user may have running at once (plans override it). Unset: no cap."
    )
    worker_heartbeat_seconds: float = Field(
        default=2.0, gt=0, description="How often a worker beats: registry row, lease renewal, message visibility."
    )
    worker_lease_seconds: float = Field(
        default=20.0, gt=0, description="How long a claim stays valid without a beat before the item is taken over."
    )
    worker_lost_item_reruns: int = Field(
        default=1, ge=0, description="Times an item whose worker died is run again before it fails (0: fail)."
    )
    worker_drain_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long a worker lets its current item finish before handing it back to the queue.",
    )

    # Credits (1 credit = 1 GPU-second)
    credits_enforced: bool = Field(
        default=True,
        description="Hold credits at enqueue, charge measured GPU time and enforce plan limits (with database_url). "
        "Off: generation is free, unmetered and unlimited.",
    )
    credit_estimate_overhead_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Estimated seconds every queue item costs besides denoising (model load, "
        "decode); part of the hold taken at enqueue.",
    )
    credit_estimate_step_seconds: dict[str, float] = Field(
        default_factory=lambda: {"sd-1": 0.05, "sd-2": 0.06, "sdxl": 0.12, "sd-3": 0.25, "flux": 0.4, "default": 0.2},
        description="Estimated GPU seconds per denoising step at 512×512, by model base (scaled by pixel count); "
        "'default' for other bases. The hold is an estimate; the charge is the measured time.",
    )
    credit_estimate_node_seconds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_NODE_SECONDS),
        description="Estimated GPU seconds of step-less nodes, by node type (upscalers, video, image processors); "
        "part of the hold. Types not listed cost nothing beyond the overhead.",
    )

    # Billing (Stripe)
    stripe_api_key: SecretStr | None = Field(default=None, description="Stripe secret key. Unset: billing off.")
    stripe_api_base: str | None = Field(
        default=None, description="Stripe API base URL (a stand-in such as localstripe). Unset: Stripe's own."
    )
    stripe_webhook_secret: SecretStr | None = Field(default=None, description="Stripe webhook signing secret.")

    # Request and content limits
    max_json_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body other than a file upload (JSON: graphs, workflows), in bytes; larger "
        "ones are answered 413. Uploads keep their own limits (the storage quota, stock's video limit).",
    )
    max_workflows_per_user: int | None = Field(
        default=1000,
        ge=1,
        description="Workflows one user may keep in the library; creating another is answered 403. Unset: no limit.",
    )
    max_queue_history_per_user: int | None = Field(
        default=1000,
        ge=0,
        description="Finished (completed, failed, canceled) queue items kept per user; older ones are deleted by a "
        "background pass in the API processes. Unset: kept until deleted.",
    )

    # Plugins and operations
    disabled_plugins: list[str] = Field(
        default_factory=list, description="Names of plugins (built-in or entry-point) that must not be loaded."
    )
    health_probe_timeout: float = Field(
        default=3.0, gt=0, description="Seconds each backend probe of /api/v1/saas/health may take."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL (postgresql+psycopg://user:password@host:port/database)")
        return value

    @property
    def sqs_active(self) -> bool:
        return self.sqs_enabled or self.sqs_endpoint_url is not None

    @model_validator(mode="after")
    def _consistent_scheduling(self) -> SaasSettings:
        if self.default_tier >= self.scheduling_tiers:
            raise ValueError(f"default_tier must be below scheduling_tiers ({self.scheduling_tiers})")
        if self.worker_lease_seconds < 3 * self.worker_heartbeat_seconds:
            raise ValueError("worker_lease_seconds must be at least three heartbeats (worker_heartbeat_seconds)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments carry the saas.yaml contents (see load_settings): environment beats file.
        return (env_settings, init_settings)


def saas_config_path(invokeai_config_file: Path | None) -> Path | None:
    """Where saas.yaml lives: ``$INVOKEAI_SAAS_CONFIG_FILE``, else beside invokeai.yaml."""
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    if invokeai_config_file is None:
        return None
    return invokeai_config_file.parent / SAAS_CONFIG_FILENAME


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SaasConfigError(f"{path}: not valid YAML ({e.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SaasConfigError(f"{path}: must be a mapping of setting names to values")
    return data


def load_settings(invokeai_config_file: Path | None = None, **overrides: Any) -> SaasSettings:
    """Build the saas settings from the environment, saas.yaml and ``overrides`` (highest priority).

    Raises ``SaasConfigError`` with a one-line message naming the bad key and where it came from.
    """
    path = saas_config_path(invokeai_config_file)
    file_values = _read_yaml(path) if path is not None and path.exists() else {}
    try:
        settings = SaasSettings(**file_values)
        if overrides:
            settings = SaasSettings.model_validate({**settings.model_dump(), **overrides})
    except ValidationError as e:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()} / {'.'.join(str(p) for p in err['loc'])}: "
            f"{err['msg']}"
            for err in e.errors()
        )
        where = f" (file {path})" if file_values else ""
        raise SaasConfigError(f"invalid saas configuration{where}: {problems}") from None
    return settings


def write_settings(path: Path, values: dict[str, Any]) -> None:
    """Write a saas.yaml (used by ``invokeai-saas dev``); values are validated first."""
    SaasSettings.model_validate(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
