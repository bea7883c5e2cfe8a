"""The HTTP routes, one module per concern; ``routers`` is what ``create_app`` mounts."""

from lamina.server.routes import chat, embeddings, models, ops

routers = [ops.router, models.router, chat.router, embeddings.router]

__all__ = ["routers"]
