"""The HTTP routes, one module per concern; ``routers`` is what ``create_app`` mounts."""

from lamina.server.routes import (
    agent,
    apps,
    ask,
    chat,
    documents,
    embeddings,
    feedback,
    models,
    ops,
    ui,
)

routers = [
    ops.router,
    models.router,
    chat.router,
    embeddings.router,
    ask.router,
    documents.router,
    feedback.router,
    agent.router,
    apps.router,
    ui.router,
]

__all__ = ["routers"]
