"""The OpenAI-compatible HTTP server (``lamina serve``).

app.py          create_app(settings) and serve(settings)
routes/         chat + completions, embeddings, models, ops (health, metrics, traces)
middleware.py   the edge: API-key auth, request span, metrics, access log; body size limit
protocol.py     uvicorn's h11 protocol with 431 for oversized headers
generation.py   one generation: preflight off the loop, admission, first token, stream, close
limits.py       bounded admission queue per model, per-key rate limits
pool.py         configured model ids -> ChatModel + its queue, bounded (LRU, memory)
keys.py         API keys, hashed in SQLite
uploads.py      upload size limit and safe_filename
schemas.py      the OpenAI wire format
errors.py       Lamina errors -> HTTP statuses
"""

from lamina.server.app import create_app, serve
from lamina.server.embeddings import Embedder
from lamina.server.keys import ApiKey, KeyStore
from lamina.server.uploads import UploadTooLargeError, read_limited, safe_filename

__all__ = [
    "ApiKey",
    "Embedder",
    "KeyStore",
    "UploadTooLargeError",
    "create_app",
    "read_limited",
    "safe_filename",
    "serve",
]
