"""Configuration from the environment (prefix ``CONTENTFORGE_``) or a ``.env`` file.

One settings object holds every knob so that backends are chosen by configuration, never by
editing code. ``.env.example`` lists each variable with a comment.

Over 500 lines on purpose: pydantic-settings reads one class, so every setting and its validator
live on it; ``docs/configuration.md`` groups them by topic.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ImageProfile = Literal["tiny", "model", "fixed-latency", "replicate"]


PUBLISH_LEASE_MIN_S = 120
"""Shortest publishing lease: above the longest single platform HTTP call (``publishing.http``:
10 s connect + 30 s write + 30 s read + 30 s pool = 100 s)."""


# Outbound URL settings (CONTENTFORGE_ALLOW_PRIVATE_URLS names some); contentforge.outbound is the policy.
ALLOW_ALL = "*"
URL_SETTINGS: tuple[str, ...] = (
    "webhook_url",
    "webhook_notify_url",
    "instagram_graph_url",
    "x_api_url",
    "tiktok_api_url",
    "replicate_base_url",
    "anthropic_base_url",
    "openai_base_url",
    "openai_moderation_base_url",
    "local_llm_base_url",
    "civitai_base_url",
    "hf_endpoint",
)
"""Settings naming a destination ContentForge sends requests to (and that may carry a key or token).

Not here, on purpose: ``database_url``, ``prefect_database_url``, ``s3_endpoint_url`` (the operator's
own infrastructure, private by nature: MinIO, PostgreSQL, the Prefect server) and ``public_base_url``
and ``api_public_url`` (URLs ContentForge hands out, never requests)."""


def parse_allow_private(value: str) -> frozenset[str]:
    """``"local_llm_base_url, CONTENTFORGE_WEBHOOK_URL"`` -> field names; an unknown name is a ValueError."""
    names = {n.strip().lower().removeprefix("contentforge_") for n in value.split(",") if n.strip()}
    if ALLOW_ALL in names:
        return frozenset({ALLOW_ALL})
    unknown = sorted(names - set(URL_SETTINGS))
    if unknown:
        raise ValueError(f"unknown URL settings {unknown}; use '*' or some of {', '.join(URL_SETTINGS)}")
    return frozenset(names)


class Settings(BaseSettings):
    """All ContentForge settings; every field maps to ``CONTENTFORGE_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="CONTENTFORGE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path(".contentforge"), description="Where images, the SQLite DB and logs live."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is a SQLite file in data_dir."
    )

    # Image generation
    image_profile: ImageProfile = Field(
        default="tiny",
        description="tiny: random-weight SDXL-shaped pipeline built in code; model: a real diffusers model; "
        "fixed-latency: a labelled benchmark backend that sleeps instead of generating.",
    )
    image_model: str | None = Field(
        default=None, description="Local folder, single .safetensors file or hub id."
    )
    image_width: int = Field(default=128, ge=64, le=2048)
    image_height: int = Field(default=128, ge=64, le=2048)
    image_steps: int = Field(default=4, ge=1, le=150)
    image_guidance: float = Field(default=5.0, ge=0.0, le=30.0)
    image_device: str = Field(default="auto", description="auto, cpu, cuda, cuda:1, mps")
    image_replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Generations at once in one process (pipelines sharing weights); 0 = auto: on CPU one "
        "per 4 cores (at least 1), on a GPU 1 (5 for tiny).",
    )
    image_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="torch threads on CPU (process-wide); 0 = auto: the cores but one split between the "
        "generations.",
    )
    image_cost_usd: float = Field(default=0.0, ge=0.0, description="Cost charged per generated image.")
    fixed_latency_s: float = Field(
        default=1.0, ge=0.0, description="Sleep per image of the fixed-latency backend."
    )
    allow_pickle: bool = Field(
        default=False, description="Allow loading pickle checkpoints (.ckpt/.bin/.pt)."
    )
    # --- Image engine (contentforge.images: loading, memory, micro-batches, Replicate) -------------
    image_family: Literal["auto", "sd15", "sdxl", "flux"] = Field(
        default="auto",
        description="Pipeline family; auto reads model_index.json (folder, hub cache) or the tensors.",
    )
    image_single_file_config: str | None = Field(
        default=None, description="Diffusers folder (or hub id) holding the configs of a single-file model."
    )
    image_memory_strategy: Literal[
        "auto", "full_gpu", "model_cpu_offload", "sequential_cpu_offload", "group_offload"
    ] = Field(default="auto", description="Where weights live on CUDA; see README 'Image models'.")
    image_memory_budget_mb: int = Field(
        default=0, ge=0, description="Weights kept loaded by the model pool; 0 = detect (90% VRAM, 50% RAM)."
    )
    image_vae_slicing: bool = Field(default=False, description="Decode micro-batches one image at a time.")
    image_vae_tiling: bool = Field(default=False, description="Decode large images in tiles.")
    image_quantization: Literal["none", "bnb_4bit", "bnb_8bit", "torchao_int8"] = Field(
        default="none", description="Quantize the denoiser (needs bitsandbytes or torchao installed)."
    )
    image_micro_batch: int = Field(
        default=0, ge=0, le=64, description="Images per pipeline call for pieces sharing settings; 0 = auto."
    )
    image_lora_registry: Path | None = Field(
        default=None, description="YAML/JSON file of named LoRAs (source, trigger, scale, family, sha256)."
    )
    # --- Model hubs and the model registry (contentforge.models, issue 16) -------------------------
    civitai_base_url: str = Field(default="https://civitai.com", description="CivitAI's REST API root.")
    civitai_api_token: SecretStr | None = Field(
        default=None, description="Optional CivitAI API token (some downloads need one); never logged."
    )
    hf_endpoint: str | None = Field(
        default=None,
        description="Hugging Face Hub root; unset: the HF_ENDPOINT variable, else https://huggingface.co.",
    )
    models_show_nsfw: bool = Field(
        default=False,
        description="List NSFW-flagged hub models in search results (they are never installed either way).",
    )
    models_max_download_mb: int = Field(
        default=16384, ge=1, description="Largest model file a download may write (MB); larger is refused."
    )
    lora_max_count: int = Field(default=3, ge=0, le=8, description="Most LoRAs the recommender applies.")
    lora_weight_cap: float = Field(
        default=1.2, gt=0.0, le=4.0, description="Cap on the sum of the recommended LoRAs' weights."
    )
    # --- end model hubs ---
    image_lora_fuse: bool = Field(
        default=False, description="Fuse active LoRAs into the weights: faster denoising, lossy switches."
    )
    """Fuse the active LoRAs into the base weights (``pipe.fuse_lora``) instead of running them as adapters.

    Faster denoising: each LoRA layer costs nothing extra per step once fused. The price is paid at every
    switch of persona LoRAs (unfuse, then fuse the new set), and in precision: fused weights are rounded to
    the model's dtype, so in fp16/bf16 images differ slightly from unfused ones, and unfusing subtracts the
    LoRA again, which restores the base weights only up to rounding. Off by default; worth it when long
    runs use one LoRA set. Generations made fused say so in their record (``lora_fused``).
    """
    replicate_api_token: SecretStr | None = None
    replicate_base_url: str = Field(default="https://api.replicate.com")
    replicate_model: str = Field(default="black-forest-labs/flux-1.1-pro", description="owner/name")
    replicate_cost_usd: float = Field(
        default=0.04,
        ge=0.0,
        description="Per Replicate image: flux-1.1-pro's list price; set your model's (schnell ~0.003).",
    )
    replicate_timeout_s: float = Field(default=120.0, gt=0.0, description="Per prediction, polling included.")
    # --- end image engine ---

    # Orchestration
    generation_slots: int = Field(default=5, ge=1, le=64, description="Size of the 'image-generation' limit.")
    concurrency_limit_name: str = Field(default="image-generation")
    gpu_deployment: str | None = Field(
        default=None,
        description="Distributed mode: the batch flow runs its GPU stage as this deployment "
        "(e.g. generate-images/generate-images on the gpu pool) instead of in-process.",
    )
    gpu_task_workers: bool = Field(
        default=False,
        description="Distributed mode with warm GPU workers: the batch flow sends its pieces to "
        "long-lived `contentforge gpu-worker` processes (Prefect task workers that keep the model "
        "loaded) instead of in-process or to gpu_deployment.",
    )
    gpu_task_pieces: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Pieces per background task run sent to the GPU workers: a multiple of the "
        "GPU's micro-batch keeps its image groups full.",
    )
    generation_claim_s: float = Field(
        default=30.0,
        ge=1.0,
        le=600.0,
        description="A warm GPU worker's claim on the pieces it generates (renewed every third of it): "
        "another worker sent the same pieces waits instead of generating them too, and takes over a dead "
        "worker's pieces this long after it died.",
    )
    prefect_database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://… for the local Prefect server's own state (default SQLite).",
    )
    cpu_pool: str = Field(default="cpu", description="Work pool of the CPU flows.")
    gpu_pool: str = Field(default="gpu", description="Work pool of the generate-images deployment.")
    gpu_work_queue: str | None = Field(
        default=None, description="Work queue of the gpu pool for this batch's GPU stage (e.g. priority)."
    )
    flow_heartbeat_s: int = Field(
        default=30,
        ge=30,
        description="Seconds between the flow-run heartbeats of ContentForge's processes "
        "(PREFECT_FLOWS_HEARTBEAT_FREQUENCY; Prefect's minimum is 30).",
    )
    crash_after_s: int = Field(
        default=240,
        ge=35,
        description="A Running flow run with no heartbeat for this long is marked Crashed (the "
        "automation `contentforge bootstrap` creates); above Prefect's default heartbeat period (180 s), "
        "so a run from a process without CONTENTFORGE's setting is never crashed while alive.",
    )
    prefect_port: int = Field(
        default=4200, ge=1, le=65535, description="Port of the local prefect server the CLI starts or reuses."
    )
    batch_lease_s: float = Field(
        default=60.0,
        ge=6.0,
        le=3600.0,
        description="A batch runner's lease (renewed every third of it): one runner per batch, and how long "
        "after a crash a resume must wait before it can take the batch over.",
    )

    # Moderation thresholds (score at or above rejects); see contentforge.moderation.policy.
    moderation_sexual: float = Field(default=0.90, ge=0.0, le=1.0)
    moderation_violence: float = Field(default=0.70, ge=0.0, le=1.0)
    moderation_hate: float = Field(default=0.50, ge=0.0, le=1.0)
    moderation_self_harm: float = Field(default=0.50, ge=0.0, le=1.0)
    moderation_harassment: float = Field(default=0.60, ge=0.0, le=1.0)
    moderation_suggestive: float = Field(
        default=0.40, ge=0.0, le=1.0, description="Sexual score at or above which a piece is 'suggestive'."
    )
    moderation_restricted: float = Field(
        default=0.70, ge=0.0, le=1.0, description="Sexual score at or above which a piece is 'restricted'."
    )

    # Storage
    public_base_url: str | None = Field(default=None, description="Base URL for stored files, e.g. a CDN.")

    # -- Storage on S3 / Cloudflare R2 / MinIO (contentforge.storage.s3) --------------------------
    storage_backend: Literal["local", "s3"] = Field(
        default="local",
        description="local: files under data_dir; s3: an S3-compatible bucket (AWS, R2, MinIO).",
    )
    s3_bucket: str | None = Field(default=None, description="Bucket name; required when storage_backend=s3.")
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Empty for AWS; R2: https://<account>.r2.cloudflarestorage.com; MinIO: http://host:9000",
    )
    s3_region: str | None = Field(default=None, description="AWS region; 'auto' for R2.")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="path for MinIO; auto/virtual for AWS and R2."
    )
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. 'prod/'.")
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="Unset: boto3's default chain (AWS_* env, ~/.aws, instance role)."
    )
    s3_secret_access_key: SecretStr | None = None
    s3_presign_expiry_s: int = Field(
        default=3600, ge=1, le=604800, description="Lifetime of presigned GET URLs when no public_base_url."
    )
    s3_max_workers: int = Field(default=8, ge=1, le=64, description="Concurrent uploads of put_many.")

    # Secrets are never logged; SecretStr keeps them out of reprs.
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None

    # --- Publishing (contentforge.publishing) --------------------------------------------------
    # Which publisher each platform uses: "outbox" (offline default, files under data_dir/outbox),
    # "webhook" (signed POST to webhook_url) or "api" (the platform's own API; needs its token).
    publisher_instagram: Literal["outbox", "webhook", "api"] = "outbox"
    publisher_x: Literal["outbox", "webhook", "api"] = "outbox"
    publisher_tiktok: Literal["outbox", "webhook", "api"] = "outbox"
    publisher_other: Literal["outbox", "webhook"] = Field(
        default="outbox", description="Publisher for platforms without an API adapter (threads, linkedin)."
    )
    publish_slots: str = Field(
        default="09:00,13:00,19:00", description="Daily posting times (HH:MM) in each persona's timezone."
    )
    publish_daily_limit: int = Field(
        default=3, ge=1, le=50, description="Posts per persona, platform and day."
    )
    publish_max_attempts: int = Field(default=5, ge=1, le=50)
    analytics_pause_hours: float = Field(
        default=0.0, ge=0.0, le=24 * 14,
        description="Hours a reach drop pauses the persona's publishing on that platform (0: alert only).",
    )  # fmt: skip
    analytics_snapshot_ages: str = Field(
        default="1,6,24,72,168", description="Post ages (hours) at which metrics are snapshotted."
    )
    publish_stale_after_s: int = Field(
        default=900,
        description="Lease of a publishing claim (s), renewed while the platform call runs; a row whose "
        f"lease expired (its worker died) is resumed by the next run. At least {PUBLISH_LEASE_MIN_S}.",
    )

    @field_validator("publish_stale_after_s")
    @classmethod
    def _lease_outlasts_a_platform_call(cls, value: int) -> int:
        if value < PUBLISH_LEASE_MIN_S:
            raise ValueError(
                f"CONTENTFORGE_PUBLISH_STALE_AFTER_S={value}: a publishing claim's lease must be at least "
                f"{PUBLISH_LEASE_MIN_S} s (longer than the longest platform HTTP call), or another run "
                "could reclaim a row while the first is still posting it"
            )
        return value

    publish_poll_interval_s: float = Field(default=2.0, ge=0.0, description="First wait when polling a post.")
    publish_poll_max: int = Field(default=10, ge=1, le=100, description="Status checks before giving up.")
    webhook_url: str | None = Field(default=None, description="Endpoint of the webhook publisher.")
    webhook_notify_url: str | None = Field(
        default=None, description="Endpoint told about every published/failed publication."
    )
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key signing webhooks.")
    instagram_graph_url: str = "https://graph.facebook.com/v21.0"
    instagram_user_id: str | None = None
    instagram_access_token: SecretStr | None = None
    instagram_ai_disclosure_param: str | None = Field(
        default=None, description="Name of an extra container parameter sent as 'true' to label AI content."
    )
    x_api_url: str = "https://api.x.com"
    x_access_token: SecretStr | None = Field(
        default=None, description="OAuth 2.0 user token (tweet.write, media.write)."
    )
    tiktok_api_url: str = "https://open.tiktokapis.com"
    tiktok_access_token: SecretStr | None = None
    tiktok_privacy_level: Literal[
        "PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"
    ] = "PUBLIC_TO_EVERYONE"
    tiktok_is_aigc: bool = Field(default=True, description="Label TikTok posts as AI-generated content.")
    # --- end Publishing -----------------------------------------------------------------------

    # --- Text providers (contentforge.text.providers) -------------------------------------------
    text_providers: str = Field(
        default="offline",
        description="Comma-separated chain tried in order: anthropic, openai, local, offline. "
        "A provider without its key or URL is skipped with a logged reason.",
    )
    anthropic_model: str = Field(default="claude-haiku-4-5")
    anthropic_base_url: str | None = Field(
        default=None, description="Another server speaking the Anthropic Messages API."
    )
    openai_model: str = Field(default="gpt-4o-mini")
    openai_base_url: str | None = Field(
        default=None, description="Another server speaking the OpenAI Chat Completions API."
    )
    local_llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible local server: llama.cpp http://localhost:8080/v1, "
        "Ollama http://localhost:11434/v1, vLLM http://localhost:8000/v1.",
    )
    local_llm_model: str | None = Field(default=None, description="Model name the local server serves.")
    local_llm_api_key: SecretStr | None = Field(default=None, description="Only if the server wants one.")
    text_timeout_s: float = Field(default=60.0, gt=0.0, le=600.0)
    text_max_attempts: int = Field(default=3, ge=1, le=10, description="Tries on 429/timeout/5xx.")
    text_retry_base_s: float = Field(default=1.0, ge=0.0, description="First backoff wait; doubles per try.")
    text_retry_max_s: float = Field(default=30.0, ge=0.0, description="Longest wait, retry-after included.")
    text_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "claude-haiku-4-5": (1.0, 5.0),
            "claude-sonnet-4-5": (3.0, 15.0),
            "claude-opus-4-1": (15.0, 75.0),
            "gpt-4o-mini": (0.15, 0.60),
            "gpt-4o": (2.50, 10.0),
            "gpt-4.1-mini": (0.40, 1.60),
            "gpt-4.1": (2.0, 8.0),
        },
        description="USD per 1M (input, output) tokens by model name or prefix, as JSON. "
        "Models not listed (local ones) cost 0.",
    )

    @field_validator("text_providers")
    @classmethod
    def _known_text_providers(cls, value: str) -> str:
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        known = ("anthropic", "openai", "local", "offline")
        if not names:
            raise ValueError(f"name at least one text provider of {', '.join(known)}")
        if unknown := [n for n in names if n not in known]:
            raise ValueError(f"unknown text providers {unknown}; use {', '.join(known)}")
        if len(set(names)) != len(names):
            raise ValueError(f"text providers repeat a name: {names}")
        return ",".join(names)

    @property
    def text_provider_names(self) -> list[str]:
        return self.text_providers.split(",")

    # --- end text providers -------------------------------------------------------------------

    # --- Safety and compliance (moderation backends, review band, platform tiers, disclosure) ---
    moderation_backends: str = Field(
        default="local",
        description="Comma list of moderation backends: local (NudeNet + text rules), openai.",
    )
    openai_moderation_base_url: str | None = Field(
        default=None,
        description="Server speaking the OpenAI moderations API; default CONTENTFORGE_OPENAI_BASE_URL, "
        "else https://api.openai.com/v1.",
    )
    openai_moderation_model: str = Field(default="omni-moderation-latest")
    openai_max_retries: int = Field(
        default=4, ge=0, le=10, description="Retries on 429/5xx/connection errors, honouring Retry-After."
    )
    openai_timeout_s: float = Field(default=30.0, gt=0.0, le=600.0)
    moderation_review_margin: float = Field(
        default=0.05,
        ge=0.0,
        le=0.5,
        description="A score this close below a reject threshold sends the piece to human review.",
    )
    moderation_disagreement: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Backends whose scores for a category differ by at least this send it to review.",
    )
    platform_tiers: dict[str, list[str]] | None = Field(
        default=None,
        description='JSON: verdict tiers each platform accepts automatically, e.g. {"tiktok":["safe"]}; '
        "unlisted platforms keep the defaults; 'restricted' and 'rejected' are never accepted.",
    )
    moderation_concurrency_limit_name: str = Field(default="moderation")
    moderation_concurrency: int = Field(
        default=4, ge=1, le=64, description="Size of the moderation global concurrency limit."
    )
    # --- LLM concurrency (model calls made from tasks hold a slot of this global limit) ---
    llm_concurrency_limit_name: str = Field(default="llm")
    llm_concurrency: int = Field(
        default=4, ge=1, le=64, description="Size of the global concurrency limit for model calls."
    )
    # --- end LLM concurrency ---
    ai_disclosure: dict[str, str] | None = Field(
        default=None,
        description='JSON: per-platform AI disclosure mode (flag, label, both, off), e.g. {"x":"label"}; '
        "default 'both'.",
    )
    ai_disclosure_label: str = Field(default="#AIgenerated", max_length=60)
    c2pa_cert_path: Path | None = Field(default=None, description="PEM certificate chain for C2PA signing.")
    c2pa_key_path: Path | None = Field(default=None, description="PEM private key for C2PA signing.")
    # --- end safety and compliance ---

    # --- Outbound URL policy (contentforge.outbound) ----------------------------------------------
    allow_private_urls: str = Field(
        default="",
        description="Comma list of URL settings that may point at a private/loopback address "
        "(e.g. local_llm_base_url for llama.cpp or Ollama on localhost), or * for all; every other "
        "outbound request goes to public addresses only.",
    )

    @field_validator("allow_private_urls")
    @classmethod
    def _known_url_settings(cls, value: str) -> str:
        parse_allow_private(value)
        return value

    # --- end outbound URL policy ---

    # --- Persona conversations (contentforge.chat; docs/chat.md) ----------------------------------
    chat_accounts: dict[str, str] = Field(
        default_factory=dict,
        description='JSON: which persona answers which account, e.g. {"instagram:<IG account id>": '
        '"<persona id>", "x:<X user id>": "<persona id>"}. Messages to other accounts are refused.',
    )
    chat_disclosure: str = Field(
        default="Hi! Just so you know: {persona} is an AI persona and these replies are written by AI.",
        min_length=10,
        max_length=300,
        description="Opens the first automated reply of every conversation; must say 'AI'. {persona} is "
        "replaced by the persona's name.",
    )
    chat_history_tokens: int = Field(
        default=1500, ge=200, le=100_000, description="Recent turns sent to the model; older are summarised."
    )
    chat_reply_max_tokens: int = Field(default=300, ge=16, le=4000)
    chat_replies_per_conversation_hour: int = Field(default=20, ge=1, le=1000)
    chat_replies_per_persona_hour: int = Field(default=500, ge=1, le=100_000)
    chat_reply_deployment_name: str = Field(default="reply-to-message/reply-to-message")
    instagram_app_secret: SecretStr | None = Field(
        default=None, description="Meta app secret: checks X-Hub-Signature-256 on Instagram webhooks."
    )
    instagram_verify_token: SecretStr | None = Field(
        default=None, description="Token you typed in the Meta app's webhook setup (hub.verify_token)."
    )
    x_consumer_secret: SecretStr | None = Field(
        default=None, description="X app consumer secret: signs the CRC answer, checks webhook signatures."
    )

    @field_validator("chat_disclosure")
    @classmethod
    def _disclosure_says_ai(cls, value: str) -> str:
        if not re.search(r"\bAI\b", value):
            raise ValueError("CONTENTFORGE_CHAT_DISCLOSURE must say 'AI': the disclosure cannot be removed")
        return value

    # --- end persona conversations ---

    # --- Brand research and strategy (contentforge.research, contentforge.strategy) -------------
    research_allow_private: bool = Field(
        default=False,
        description="Allow fetching private/loopback/link-local addresses (tests, trusted intranets only).",
    )
    research_max_bytes: int = Field(default=2_000_000, ge=1_000, le=50_000_000, description="Per page.")
    research_timeout_s: float = Field(default=15.0, gt=0.0, le=120.0, description="Per page, with redirects.")
    research_max_redirects: int = Field(default=5, ge=0, le=20)
    research_max_pages: int = Field(default=6, ge=1, le=30, description="Pages read per brand, with links.")
    approval_timeout_s: int = Field(
        default=86_400, ge=1, description="How long persona/topic/blog approvals wait in the Prefect UI."
    )
    persona_default_selection: int = Field(
        default=3, ge=3, le=6, description="On approval timeout, the first N persona candidates are saved."
    )
    approve_on_timeout: bool = Field(
        default=False, description="Topics and blog drafts nobody reviewed: approve (true) or leave proposed."
    )
    # --- end brand research and strategy ---

    # --- REST API and review gallery (contentforge_api) -------------------------------------------
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for every API call. Without one the API starts only on loopback "
        "with --insecure-local.",
    )
    api_read_token: SecretStr | None = Field(
        default=None, description="Optional read-only bearer token (GET endpoints and the gallery view)."
    )
    api_host: str = Field(default="127.0.0.1", description="Interface `contentforge api serve` binds.")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_public_url: str | None = Field(
        default=None, description="Base URL users reach the API at (gallery links); default http://host:port."
    )
    batch_deployment_name: str = Field(
        default="produce-content-batch/produce-content-batch",
        description="Deployment (flow/deployment) the API starts batches with via run_deployment.",
    )
    api_max_body_bytes: int = Field(
        default=12 * 1024 * 1024, ge=1024, description="Largest request body the API accepts (413 above)."
    )
    api_max_image_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest decoded image for /content/safety-check."
    )
    api_image_url_allow_private: bool = Field(
        default=False,
        description="Let /content/safety-check fetch an image_url on a private/loopback address (tests "
        "only). Separate from research's opt-in: trusting an intranet brand site must not let every "
        "write token make the API reach internal hosts.",
    )
    api_high_priority_allowed: bool = Field(
        default=False,
        description="Whether the API token may start jobs with priority high (the `priority` work queue, "
        "first turn at the image slots); without it such a request is refused with 403.",
    )
    api_idempotency_ttl_s: int = Field(
        default=86_400,
        ge=60,
        description="How long an Idempotency-Key (per token and endpoint) is remembered in the database; "
        "after that the same key starts new work.",
    )
    api_idempotency_wait_s: float = Field(
        default=5.0,
        ge=0.0,
        le=60.0,
        description="How long a request waits for another request with the same Idempotency-Key to "
        "finish before it is answered 409 idempotency_key_in_progress.",
    )
    # --- end REST API ---

    @field_validator("image_width", "image_height")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples by 8), got {value}")
        return value

    @field_validator("image_device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        device = value.strip().lower()
        if not re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d{1,2})?", device):
            raise ValueError(f"use auto, cpu, mps, cuda or cuda:N, got {value[:40]!r}")
        return device

    @model_validator(mode="after")
    def _flux_sizes(self) -> Settings:
        # Flux packs 2x2 latent patches: diffusers resizes other sizes (with a warning), and the image
        # would not match its record.
        if self.image_family == "flux":
            for name in ("image_width", "image_height"):
                if getattr(self, name) % 16:
                    raise ValueError(
                        f"CONTENTFORGE_{name.upper()} must be a multiple of 16 for "
                        f"CONTENTFORGE_IMAGE_FAMILY=flux, got {getattr(self, name)}"
                    )
        return self

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/contentforge.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'contentforge.db').resolve()}"

    @property
    def content_dir(self) -> Path:
        return self.data_dir / "content"

    @property
    def prefect_home(self) -> Path:
        """PREFECT_HOME of the local server and of the processes the CLI runs."""
        return self.data_dir / "prefect"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
