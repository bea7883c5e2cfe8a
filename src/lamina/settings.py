"""One typed settings object.

Precedence, highest first: arguments passed in code, ``LAMINA_*`` environment variables, a
``lamina.toml`` file (``$LAMINA_CONFIG``, else ``./lamina.toml``, else
``$LAMINA_HOME/lamina.toml``), then the defaults below. Nested tables use ``__`` in the
environment: ``LAMINA_LOCAL__N_CTX=4096`` is ``[local] n_ctx = 4096`` in the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lamina.errors import ConfigError

__all__ = [
    "AgentSettings",
    "AnthropicSettings",
    "LoaderSettings",
    "LocalSettings",
    "OpenAISettings",
    "RetrievalSettings",
    "SandboxSettings",
    "ServerSettings",
    "Settings",
    "TelemetrySettings",
    "ToolSettings",
    "config_file",
    "describe_invalid",
    "get_settings",
]


def _default_home() -> Path:
    return Path(os.environ.get("LAMINA_HOME", Path.home() / ".lamina"))


def config_file() -> Path | None:
    """The ``lamina.toml`` in force, if any."""
    candidates = [os.environ.get("LAMINA_CONFIG"), "lamina.toml", _default_home() / "lamina.toml"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class LocalSettings(BaseModel):
    """The llama.cpp backend."""

    model_path: Path | None = Field(
        None, description="A GGUF file; empty means the bundled SmolLM2-135M-Instruct."
    )
    n_ctx: int = Field(8192, ge=256, description="Context window in tokens.")
    n_threads: int | None = Field(None, description="CPU threads; empty means all cores.")
    n_batch: int = Field(512, ge=1, description="Prompt tokens evaluated per forward pass.")
    n_gpu_layers: int = Field(
        0,
        ge=-1,
        description="Layers offloaded to the GPU (-1: all); needs a CUDA or Metal build of "
        "llama-cpp-python (see the README: LLAMA_CMAKE_ARGS).",
    )
    # local-batched: continuous batching over one context (lamina.models.batched)
    slots: int = Field(
        8, ge=1, description="local-batched: requests decoding together in one context."
    )
    slot_ctx: int | None = Field(
        None,
        ge=16,
        description="local-batched: each request's context window in tokens; empty means "
        "n_ctx split across the slots.",
    )
    prefill_chunk: int = Field(
        128,
        ge=1,
        description="local-batched: most prompt tokens one step takes while others decode.",
    )
    queue_size: int = Field(
        32, ge=0, description="local-batched: requests waiting for a slot; more are refused."
    )
    batched_format: str | None = Field(
        None,
        description="local-batched: serve the model converted to this llama.cpp quantization "
        "(q8_0, q4_0, iq4_nl, ...), converted once on first use and kept under "
        "$LAMINA_HOME/models; empty serves the file as it is. Faster batched decode, slightly "
        "different answers: docs/benchmarks.md measures each format.",
    )


class OpenAISettings(BaseModel):
    """Any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp server, TGI."""

    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable with the key.")
    context_window: int | None = Field(None, description="Override when the server's is known.")
    json_mode: Literal["json_schema", "json_object"] = Field(
        "json_schema",
        description="How a JSON schema is sent: 'json_schema' (OpenAI, vLLM, Ollama) or "
        "'json_object' with a 'schema' key (llama-cpp-python's server).",
    )
    endpoint_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Keys for other servers: base URL -> name of the environment variable "
        "holding that server's key. The api_key_env key goes to base_url only.",
    )


class AnthropicSettings(BaseModel):
    base_url: str = "https://api.anthropic.com"
    api_key_env: str = "ANTHROPIC_API_KEY"
    version: str = "2023-06-01"


class ServerSettings(BaseModel):
    """``lamina serve``: the OpenAI-compatible HTTP server."""

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 exposes it.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port.")
    model: str | None = Field(
        None,
        description="Spec of the default served model (e.g. 'local-batched', 'openai:...'); "
        "empty means the top-level 'model' setting, with 'local' served as 'local-batched'.",
    )
    model_id: str = Field(
        "lamina", description="Stable id clients use for the default model in the 'model' field."
    )
    models: dict[str, str] = Field(
        default_factory=dict,
        description="More served models: id (what clients send as 'model') -> spec. Clients "
        "can name only these and model_id; a list of specs serves each under its own spec.",
    )
    embedding_models: dict[str, str] = Field(
        default_factory=lambda: {"minilm": "minilm"},
        description="Served embedding models: id -> embedder spec; the first one answers "
        "requests that name none.",
    )
    max_loaded_models: int = Field(
        4, ge=1, description="Chat models held loaded at once; the least recently used goes."
    )
    model_memory_bytes: int | None = Field(
        None,
        ge=1,
        description="Budget for loaded models, estimated by their weight files' sizes; empty "
        "means half of physical memory.",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="Largest request body on any route; more gets 413."
    )
    max_embedding_inputs: int = Field(
        2048, ge=1, description="Most texts in one /v1/embeddings request; more gets 400."
    )
    embedding_batch: int = Field(
        64,
        ge=1,
        description="Texts embedded per turn: a large request takes several turns, so requests "
        "queued behind it wait for one turn, not for all of it.",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        description="Requests generating at once per model; empty means what the model can "
        "run at once: local.slots for local-batched, 1 for other backends.",
    )
    queue_size: int = Field(
        16, ge=0, description="Requests waiting per model beyond that; more get 429 + Retry-After."
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="Whole-request deadline, queue wait included; then 504."
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    upload_limit_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest accepted upload body in bytes."
    )
    data_dir: Path | None = Field(
        None,
        description="Uploaded files, the server's document index and its ingest jobs; empty "
        "means home/server.",
    )
    max_upload_files: int = Field(64, ge=1, description="Most files in one upload request.")
    max_queued_jobs: int = Field(
        32, ge=1, description="Ingest jobs waiting at once; one more upload gets 429."
    )
    agent_tools: list[str] = Field(
        default_factory=lambda: ["calculator", "search_documents"],
        description="Tools /v1/agent may run (search_documents sees the caller's collections "
        "only); 'python' also needs the sandbox's isolation.",
    )
    ui: bool = Field(True, description="Serve the web UI at /.")
    requests_per_minute: float | None = Field(
        None, gt=0, description="Default per-API-key request limit; a key may override it."
    )
    tokens_per_minute: float | None = Field(
        None, gt=0, description="Default per-API-key token limit (prompt + completion)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty disables CORS."
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces."
    )
    local_traces: bool = Field(
        True, description="Append finished spans as JSON lines under home/traces."
    )
    log_level: str = Field("INFO", description="Level of the server's JSON logs.")

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "any_model" in data:
            raise ConfigError(
                "server.any_model (LAMINA_SERVER__ANY_MODEL) was removed: a client can no longer "
                "name an arbitrary model spec. List the models clients may use in the "
                'server.models table (id = "spec"), or pass `lamina serve --model SPEC` for '
                "each, and delete any_model from your settings."
            )
        if isinstance(data, dict) and isinstance(data.get("models"), list | tuple):
            return {**data, "models": {spec: spec for spec in data["models"]}}
        return data


class LoaderSettings(BaseModel):
    """Limits that keep one hostile document from exhausting memory or time during ingest."""

    max_document_chars: int = Field(
        20_000_000, ge=1, description="Most characters of text one document may yield."
    )
    max_uncompressed_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="Most bytes a document's compressed parts may expand to (DOCX zip members, "
        "checked before parsing; PDF page contents).",
    )
    max_compression_ratio: float = Field(
        100.0,
        gt=1,
        description="Highest uncompressed/compressed ratio of a zip member over 1 MiB.",
    )
    max_pdf_stream_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Most bytes one decompressed PDF stream may hold."
    )
    max_html_depth: int = Field(
        512, ge=1, description="Deepest element nesting read from an HTML file (as Chromium)."
    )


class RetrievalSettings(BaseModel):
    """Search and ingest of an index, on either store."""

    ef_search: int = Field(
        100,
        ge=1,
        le=1000,
        description="PostgreSQL: candidates pgvector's HNSW search keeps (hnsw.ef_search; at "
        "least k is used). Higher is closer to exact search and slower.",
    )
    ann_threshold: int = Field(
        200_000,
        ge=1,
        description="SQLite: chunks above which the local dense index is approximate (IVF, "
        "needs lamina[ann]) instead of exact.",
    )
    ingest_wait_s: float = Field(
        0.0,
        ge=0,
        description="How long an ingest waits for another ingest into the same index to "
        "finish before it stops with an error (0: stop at once).",
    )


class SandboxSettings(BaseModel):
    """The ``python`` tool's sandbox (lamina.tools.sandbox; what it protects: docs/agents.md)."""

    allow_unsafe: bool = Field(
        False,
        description="Run code without network and filesystem isolation when the OS cannot "
        "provide it (no user namespaces). Off: the tool refuses instead.",
    )
    cpu_s: int = Field(5, ge=1, description="CPU seconds the code may use.")
    wall_s: float = Field(10.0, gt=0, description="Wall-clock seconds before it is killed.")
    memory_bytes: int = Field(
        512 * 1024 * 1024, ge=32 * 1024 * 1024, description="Address-space limit."
    )
    processes: int = Field(16, ge=1, description="Processes and threads it may run at once.")
    output_bytes: int = Field(
        64 * 1024, ge=1024, description="stdout + stderr read back; more kills the run."
    )
    disk_bytes: int = Field(
        32 * 1024 * 1024, ge=1024 * 1024, description="Size of its writable work directory."
    )


class ToolSettings(BaseModel):
    """Built-in tools (lamina.tools)."""

    timeout_s: float = Field(30.0, gt=0, description="Longest one tool call may run.")
    max_output_chars: int = Field(
        4000, ge=100, description="Longest observation shown to the model; more is cut."
    )
    http_allow: list[str] = Field(
        default_factory=list,
        description="URL prefixes http_get may fetch (e.g. 'https://docs.python.org/'); "
        "empty keeps http_get off.",
    )
    web_search_url: str | None = Field(
        None,
        description="A SearxNG-compatible JSON search endpoint for web_search "
        "(e.g. 'http://127.0.0.1:8888/search'); empty: web_search has no provider.",
    )
    sql_database: Path | None = Field(
        None, description="The SQLite file the sql tool reads (opened read-only)."
    )


class AgentSettings(BaseModel):
    """The agent loop (lamina.agents): its default limits."""

    max_steps: int = Field(8, ge=1, description="Model calls in one run before it stops.")
    timeout_s: float = Field(300.0, gt=0, description="Wall-clock limit of one run.")
    max_tokens: int | None = Field(None, ge=1, description="Token budget of one run.")
    max_cost_usd: float | None = Field(None, ge=0, description="Cost budget of one run.")
    max_tool_errors: int = Field(3, ge=1, description="Failed tool calls before it stops.")


class TelemetrySettings(BaseModel):
    """What traces record and where experiment runs are logged (docs/observability.md).
    Where spans go is ``server.otlp_endpoint`` / ``server.local_traces``, for every run."""

    capture_content: bool = Field(
        False,
        description="Record prompts, completions, retrieved text and tool arguments in spans "
        "(OpenInference input.value, llm.input_messages, retrieval.documents.N.document."
        "content, tool.parameters). Off: spans keep kinds, models, token counts, costs, "
        "document ids and scores, tool names. Secrets are redacted either way.",
    )
    wandb: bool = Field(
        False, description="Log tuning and eval runs to Weights & Biases (the wandb extra)."
    )
    wandb_mode: Literal["offline", "online", "disabled"] | None = Field(
        None,
        description="wandb's mode; empty: $WANDB_MODE, else offline (files only, `wandb sync` "
        "uploads them later). Only 'online' talks to a W&B server.",
    )
    wandb_dir: Path | None = Field(None, description="Run directories; empty: home/wandb.")
    wandb_project: str = Field("lamina", description="The W&B project runs belong to.")


class Settings(BaseSettings):
    """Every knob Lamina reads. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="LAMINA_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default_factory=_default_home, description="Cache, keys and traces.")
    model: str = Field("local", description="Default model spec, e.g. 'openai:gpt-4o-mini'.")
    local: LocalSettings = Field(default_factory=LocalSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    anthropic: AnthropicSettings = Field(default_factory=AnthropicSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    loaders: LoaderSettings = Field(default_factory=LoaderSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    agents: AgentSettings = Field(default_factory=AgentSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout for API backends.")
    max_retries: int = Field(4, ge=0, description="Retries of transient failures.")
    backoff_base_s: float = Field(0.5, ge=0, description="First retry delay; doubles each try.")
    backoff_max_s: float = Field(30.0, ge=0, description="Longest single retry delay.")
    requests_per_minute: float | None = Field(None, gt=0, description="Client-side limit.")
    tokens_per_minute: float | None = Field(None, gt=0, description="Client-side limit.")
    cache: bool = Field(True, description="Cache deterministic calls on disk.")
    pricing: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Extra prices: model -> (USD per 1M input tokens, per 1M output tokens).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def cache_path(self) -> Path:
        return self.home / "cache.sqlite"

    @property
    def keys_path(self) -> Path:
        return self.home / "keys.sqlite"

    @property
    def traces_dir(self) -> Path:
        return self.home / "traces"


def describe_invalid(error: ValidationError) -> str:
    """A settings ValidationError as one line per setting: its name, its environment variable,
    what is wrong and the value given.

    >>> try:
    ...     Settings(local={"n_ctx": "abc"})
    ... except ValidationError as exc:
    ...     print(describe_invalid(exc))
    Invalid setting local.n_ctx (LAMINA_LOCAL__N_CTX): Input should be a valid integer, \
unable to parse string as an integer; got 'abc'. Fix it in the environment or lamina.toml.
    """
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        variable = "LAMINA_" + "__".join(str(part).upper() for part in problem["loc"])
        given = f"; got {problem['input']!r}" if not isinstance(problem["input"], dict) else ""
        lines.append(
            f"Invalid setting {name} ({variable}): {problem['msg']}{given}. Fix it in the "
            f"environment or lamina.toml."
        )
    return "\n".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return Settings()
