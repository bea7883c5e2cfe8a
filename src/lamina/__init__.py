"""Lamina: a local-first LLM application stack."""

from lamina.errors import (
    AuthenticationError,
    ConfigError,
    ContextOverflowError,
    IncompleteOutputError,
    InvalidRequestError,
    LaminaError,
    MissingDependencyError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    RateLimitError,
    TransientError,
)
from lamina.models import BaseChatModel, ChatModel, backends, get_model, register
from lamina.settings import Settings, get_settings
from lamina.types import ChatOptions, Completion, Delta, Message, TokenLogprob, Usage

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BaseChatModel",
    "ChatModel",
    "ChatOptions",
    "Completion",
    "ConfigError",
    "ContextOverflowError",
    "Delta",
    "IncompleteOutputError",
    "InvalidRequestError",
    "LaminaError",
    "Message",
    "MissingDependencyError",
    "ModelNotFoundError",
    "OverloadedError",
    "ProviderError",
    "RateLimitError",
    "Settings",
    "TokenLogprob",
    "TransientError",
    "Usage",
    "__version__",
    "backends",
    "get_model",
    "get_settings",
    "register",
]
