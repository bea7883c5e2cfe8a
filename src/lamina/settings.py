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
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "AnthropicSettings",
    "LocalSettings",
    "OpenAISettings",
    "Settings",
    "config_file",
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


class AnthropicSettings(BaseModel):
    base_url: str = "https://api.anthropic.com"
    api_key_env: str = "ANTHROPIC_API_KEY"
    version: str = "2023-06-01"


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return Settings()
