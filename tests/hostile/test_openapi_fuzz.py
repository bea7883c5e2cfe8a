"""Schemathesis against the server's own OpenAPI schema: every route, generated requests
(valid by the schema and, in its negative phase, invalid ones), never a 5xx, always JSON.

The model behind the routes is the scripted one: what is under test is the HTTP edge (request
validation, error mapping), and it keeps each example to milliseconds. Bounded at 30 examples
per operation, a few seconds in all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings

from lamina.server import create_app
from lamina.settings import Settings
from tests.conftest import require

schemathesis = require("schemathesis", "the dev extra installs it: pip install -e '.[dev]'")


class TinyEmbedder:
    name = "tiny"
    dimension = 4

    def embed_documents(self, texts: list[str]) -> Any:
        return np.ones((len(texts), 4), dtype=np.float32)


def _app() -> Any:
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="lamina-fuzz-"))
    settings = Settings(home=home, model="scripted", cache=False, max_retries=0)
    return create_app(settings, warm_up=False, embedders={"minilm": TinyEmbedder()})


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure here is reproducible
)
def test_no_generated_request_gets_a_server_error(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"], response.text
