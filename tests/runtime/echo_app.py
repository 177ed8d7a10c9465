"""A tiny HTTP server for runtime tests: listens on $PORT, answers with its version and identity."""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("VERSION", "v1")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
        if self.path == "/healthz" and os.path.exists(os.environ.get("UNHEALTHY_FILE", "/nonexistent")):
            self._send(503, {"status": "unhealthy"})
            return
        keys = ("POD_NAME", "POD_NAMESPACE", "HOSTNAME", "PORT", "HTTP_PROXY", "NO_PROXY", "GREETING",
                "FROM_CM", "FROM_SECRET", "MY_NS", "MY_LABEL", "ECHO_SERVICE_HOST", "ECHO_SERVICE_PORT")
        self._send(200, {"version": VERSION, "argv": sys.argv[1:], "cwd": os.getcwd(),
                         "env": {k: os.environ.get(k) for k in keys}})

    def _send(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")
        sys.stdout.flush()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    if os.environ.get("IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn app: only SIGKILL stops it
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {VERSION} on {os.environ['PORT']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
