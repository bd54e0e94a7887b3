"""A tiny fake of Flink's REST API: scripted answers per (method, path), every request recorded."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetflow.settings import StackSettings


@dataclass
class FakeFlink:
    port: int
    # (method, path) -> answers served in order; the last one repeats.
    routes: dict[tuple[str, str], list[tuple[int, object]]] = field(default_factory=dict)
    requests: list[tuple[str, str, object]] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: object, status: int = 200) -> None:
        self.routes[(method, path)] = [(status, a) for a in answers]

    def job(self, job_id: str, name: str, state: str = "RUNNING", parallelism: int = 1, start_ms: int = 1_000) -> None:
        overview = self.routes.setdefault(("GET", "/jobs/overview"), [(200, {"jobs": []})])
        overview[-1][1]["jobs"].append({"jid": job_id, "name": name, "state": state, "start-time": start_ms})
        self.on("GET", f"/jobs/{job_id}", {"jid": job_id, "name": name, "state": state, "start-time": start_ms,
                                           "vertices": [{"parallelism": parallelism, "status": state}]})

    def calls(self, method: str, path: str) -> list:
        return [body for m, p, body in self.requests if (m, p) == (method, path)]


def flink_error(message: str) -> dict:
    return {"errors": [f"org.apache.flink.runtime.rest.handler.RestHandlerException: outer\n\tat Foo.bar(Foo.java:1)\n"
                       f"Caused by: {message}\n\tat Baz.qux(Baz.java:2)\n"]}


@pytest.fixture
def fake_flink(tmp_path):
    """Factory-free: yields (FakeFlink, StackSettings pointing at it with .fleetflow in tmp_path)."""
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            fake: FakeFlink = state["fake"]
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            path = self.path.split("?")[0]
            fake.requests.append((method, path, body))
            answers = fake.routes.get((method, path))
            if not answers:
                status, payload = 404, flink_error(f"no route {method} {path}")
            else:
                status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            self._answer("GET")

        def do_POST(self):
            self._answer("POST")

        def do_PATCH(self):
            self._answer("PATCH")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakeFlink(server.server_address[1])
    state["fake"] = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    s = StackSettings(home=tmp_path / ".fleetflow", host="127.0.0.1", flink_rest_port=fake.port)
    yield fake, s
    server.shutdown()
    server.server_close()
