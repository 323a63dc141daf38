"""Service settings: one pydantic-settings class, read from `VAESERVE_*` environment variables.

Invalid values stop the service at start-up with a message naming the variable.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SHIPPED_REPOSITORY = Path(str(files("model") / "zoo"))
SHIPPED_DEFAULT = "mnist-vae"  # of the shipped repository's models (beside it: fundus-vae, colour patches)


class Settings(BaseSettings):
    """Everything an operator can set; each field is `VAESERVE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="VAESERVE_", extra="forbid", frozen=True)

    model_repository: Path = SHIPPED_REPOSITORY  # <root>/<name>/<version>/manifest.json
    # "name" or "name:version"; None: SHIPPED_DEFAULT for the shipped repository, else the first name in the repository
    default_model: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)  # server processes for `python -m app`; each loads every model

    ort_intra_op_threads: int = Field(1, ge=0)  # per session; 0 lets ONNX Runtime choose
    ort_inter_op_threads: int = Field(1, ge=0)
    ort_graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    ort_providers: list[str] = ["CPUExecutionProvider"]
    ort_memory_arena: bool = True  # ONNX Runtime's CPU arena: faster and less fragmented; RSS keeps its peak

    hot_paths: bool = True  # encode, score, reconstruct and v2 infer past FastAPI's routing (app/api/hot_paths.py)
    batching: bool = True  # gather concurrent requests into one ONNX Runtime call per model
    batch_max_size: int = Field(64, ge=1)  # rows (images or latents) per batch
    batch_max_delay_us: int = Field(500, ge=0)  # how long the first request of a batch may wait for others
    batch_queue_size: int = Field(512, ge=1)  # queued requests per model and operation; more get 503

    api_keys: Annotated[list[str], NoDecode] = []  # empty: no authentication; comma-separated or JSON
    metrics_need_key: bool = False  # whether /metrics asks for a key too (health never does)
    # Model monitoring (docs/monitoring.md): score histograms, anomaly rate, latent drift.
    monitoring: bool = True  # off: no per-model metrics, no /v1/models/{name}/monitoring, no drift
    anomaly_rate_window: int = Field(500, ge=1)  # the last N scored images the anomaly rate covers
    drift_window: int = Field(500, ge=2)  # the last N posterior means a drift report tests
    drift_interval_s: float = Field(60.0, ge=0)  # seconds between drift reports, off the request path; 0: no drift
    admin_enabled: bool = True  # POST /v1/admin/reload; it always needs a key, so it is off without keys
    cors_origins: Annotated[list[str], NoDecode] = []  # empty: no CORS headers at all
    request_timeout_s: float = Field(30.0, gt=0)  # a request still unanswered after this gets 504
    max_concurrent_requests: int = Field(256, ge=1)  # in flight at once; more get 503 at once
    log_format: Literal["auto", "json", "text"] = "auto"  # auto: text on a terminal, JSON lines otherwise
    playground: bool = True  # GET /playground: the page that draws, scores, samples and explores; off: 404

    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_images_per_request: int = Field(256, ge=1)
    max_pixels_per_image: int = Field(4096 * 4096, ge=1)
    max_samples: int = Field(256, ge=1)  # n for GET /v1/samples
    max_importance_samples: int = Field(5000, ge=1)  # K for scores
    max_interpolation_steps: int = Field(64, ge=2)  # images along one path of POST /v1/interpolate
    max_traversal_dimensions: int = Field(16, ge=1)  # dimensions swept by one POST /v1/traverse
    max_traversal_steps: int = Field(32, ge=1)  # values per swept dimension
    max_traversal_range: float = Field(10.0, gt=0)  # |value| of a sweep, in prior standard deviations
    # images x K per scoring request: the work one request can buy, checked before any is done.
    # 256 x 64: every image a request may hold, at the shipped calibration's K.
    max_total_importance_samples: int = Field(16384, ge=1)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_long_enough(cls, keys: list[str]) -> list[str]:
        if any(len(key) < 16 for key in keys):
            raise ValueError("every API key must be at least 16 characters")
        return keys

    @field_validator("model_repository")
    @classmethod
    def _repository_exists(cls, path: Path) -> Path:
        if not path.is_dir():
            raise ValueError(f"model repository {path} is not a directory")
        return path

    @field_validator("ort_providers")
    @classmethod
    def _known_providers(cls, providers: list[str]) -> list[str]:
        from model.providers import check_providers  # unknown names fail; missing ones fall back (model/providers.py)

        return check_providers(providers)
