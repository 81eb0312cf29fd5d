"""A local OpenAI-compatible embeddings server for tests (127.0.0.1, a free port, stopped by the test).

`serve(embed, mode)` answers POST /embeddings ({"model", "input"} -> {"data": [{"index", "embedding"}]}) with
`embed(texts)`. Modes make it fail the ways real endpoints fail: "500" (always a server error), "flaky"
(503 on the first two requests, then answers), "hang" (never answers until the server stops), "dim" (3-d
vectors), "auth" (401 unless the Bearer key is KEY). Not a test module (leading underscore)."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = "sk-test-9f8e7d6c5b4a"


@contextmanager
def serve(embed, mode: str = "ok"):
    state = {"requests": 0, "auth_headers": [], "bodies": []}
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            state["requests"] += 1
            state["auth_headers"].append(self.headers.get("Authorization"))
            state["bodies"].append(body)
            if not self.path.endswith("/embeddings"):
                return self._send(404, {"error": {"message": "not found"}})
            if mode == "500" or (mode == "flaky" and state["requests"] <= 2):
                return self._send(500 if mode == "500" else 503, {"error": {"message": "overloaded"}})
            if mode == "hang":
                release.wait()
                return self._send(503, {"error": {"message": "too late"}})
            if mode == "auth" and self.headers.get("Authorization") != f"Bearer {KEY}":
                return self._send(401, {"error": {"message": "invalid api key"}})
            vectors = [[0.1, 0.2, 0.3] for _ in body["input"]] if mode == "dim" else embed(body["input"]).tolist()
            self._send(200, {"object": "list", "model": body.get("model"),
                             "data": [{"object": "embedding", "index": i, "embedding": v}
                                      for i, v in enumerate(vectors)]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join()
