"""A real OTLP/HTTP trace receiver for tests: decodes the protobuf export the way a collector
does (opentelemetry-proto) and appends each span as one JSON line to a file: its attributes,
events, status (code and message) and the headers of the request that carried it.

    python otlp_receiver.py OUT.jsonl      # prints the port it listens on (127.0.0.1), then serves
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def decode(body: bytes, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource in request.resource_spans:
        service = {kv.key: value(kv.value) for kv in resource.resource.attributes}
        for scope in resource.scope_spans:
            for span in scope.spans:
                spans.append(
                    {
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_id": span.parent_span_id.hex() or None,
                        "status": span.status.code,
                        "status_message": span.status.message,
                        "resource": service,
                        "attributes": {kv.key: value(kv.value) for kv in span.attributes},
                        "events": [
                            {
                                "name": event.name,
                                "attributes": {kv.key: value(kv.value) for kv in event.attributes},
                            }
                            for event in span.events
                        ],
                        "request_headers": headers or {},
                    }
                )
    return spans


class Handler(BaseHTTPRequestHandler):
    out: Path
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        lines = [json.dumps(span) + "\n" for span in decode(body, headers)]
        with self.lock, self.out.open("a", encoding="utf-8") as file:
            file.writelines(lines)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    Handler.out = Path(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
