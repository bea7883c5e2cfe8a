"""The model layer: the ChatModel interface, its backends and the registry that finds them."""

from lamina.models.base import BaseChatModel, ChatModel, Prompt
from lamina.models.registry import backends, get_model, register

__all__ = ["BaseChatModel", "ChatModel", "Prompt", "backends", "get_model", "register"]
