"""The OpenAPI schema of the document, ask, agent, feedback and UI routes: every route is
there with its request body, its success schema and each error it can answer (the error
shape), and the answers the routes really give validate against the documented models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lamina.server import create_app
from lamina.settings import Settings
from tests.server.test_documents import GUIDE, build, minilm, request, upload

__all__ = ["minilm"]

ROUTES: dict[tuple[str, str], tuple[str, str, set[str]]] = {
    # (method, path): (success status, schema name, error statuses)
    ("post", "/v1/ask"): ("200", "AskResponse", {"400", "401", "404", "413", "429", "503", "504"}),
    ("post", "/v1/documents"): ("202", "Job", {"400", "401", "403", "404", "413", "429", "503"}),
    ("get", "/v1/documents"): ("200", "DocumentList", {"400", "401", "404"}),
    ("get", "/v1/documents/{document_id}/text"): ("200", "DocumentText", {"400", "401", "404"}),
    ("delete", "/v1/documents/{document_id}"): ("200", "Deleted", {"401", "403", "404"}),
    ("get", "/v1/jobs/{job_id}"): ("200", "Job", {"401", "404"}),
    ("get", "/v1/jobs"): ("200", "JobList", {"401"}),
    ("get", "/v1/collections"): ("200", "CollectionList", {"401"}),
    ("post", "/v1/collections/{name}/share"): (
        "200",
        "CollectionOut",
        {"400", "401", "403", "404"},
    ),
    ("post", "/v1/feedback"): ("200", "FeedbackOut", {"400", "401", "404"}),
    ("post", "/v1/agent"): (
        "200",
        "AgentResult",
        {"400", "401", "404", "413", "429", "501", "503", "504"},
    ),
    ("get", "/v1/me"): ("200", "Me", {"401"}),
}


def test_every_route_documents_its_answers(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, model="scripted"), warm_up=False)
    schema = app.openapi()
    for (method, path), (ok, model, failures) in ROUTES.items():
        operation = schema["paths"][path][method]
        responses = operation["responses"]
        success = responses[ok]["content"]["application/json"]["schema"]
        assert success["$ref"].endswith(f"/{model}"), (path, success)
        assert failures <= set(responses), (path, failures - set(responses))
        for status in failures:
            body = responses[status]["content"]["application/json"]["schema"]
            assert body["$ref"].endswith("/ErrorBody"), (path, status)
            assert responses[status]["description"]
        if method == "post" and path != "/v1/documents":
            assert "application/json" in operation["requestBody"]["content"], path
    upload_body = schema["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload_body
    streamed = schema["paths"]["/v1/ask"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in streamed
    assert "/" not in schema["paths"]  # the UI's files are not API


def test_real_answers_validate_against_the_documented_models(tmp_path: Path, minilm: Any) -> None:
    from lamina.server import wire
    from lamina.server.jobs import Job

    app = build(tmp_path / "home", minilm)
    job = upload(app, [("guide.md", GUIDE)])
    Job.model_validate(job)
    checks: list[tuple[Any, str, str, dict[str, Any]]] = [
        (wire.DocumentList, "GET", "/v1/documents", {}),
        (wire.CollectionList, "GET", "/v1/collections", {}),
        (wire.JobList, "GET", "/v1/jobs", {}),
        (wire.Me, "GET", "/v1/me", {}),
        (wire.AskResponse, "POST", "/v1/ask", {"json": {"question": "Velmora's capital?"}}),
    ]
    for model, method, url, kwargs in checks:
        r = request(app, method, url, **kwargs)
        assert r.status_code == 200, r.text
        model.model_validate(r.json())
    (doc,) = request(app, "GET", "/v1/documents").json()["data"]
    wire.DocumentText.model_validate(request(app, "GET", f"/v1/documents/{doc['id']}/text").json())
    error = request(app, "GET", "/v1/jobs/job-0")
    wire.ErrorBody.model_validate(error.json())
