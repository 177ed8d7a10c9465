"""SIGTERM to a real `graylane server` (a rolling update): what clients in the middle of a request receive.

An upload still being sent when the signal arrives finishes with its normal answer even past uvicorn's old 5 s
limit, new requests and /healthz answer 503 (Retry-After, Connection: close), an SSE stream ends with
`event: reconnect` and a complete chunked body, a long-poll answers 503 at once, and a request still unfinished
at the drain deadline answers 503 naming it, never uvicorn's 500."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from graylane.settings import read_cli_token

CM = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: slow}\ndata: {k: v}\n"


def start(state: Path, port: int, drain_s: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{port}",
           "GRAYLANE_DRAIN_S": drain_s}
    env.pop("GRAYLANE_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "graylane.cli.main", "server", "--no-components",
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)  # polling the port until it answers
    proc.kill()
    raise AssertionError("server did not answer /healthz within 60s")


@pytest.fixture
def served(state_dir: Path, port: int, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[bytes]]:
    proc = start(state_dir, port, request.param)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def open_upload(port: int, token: str, body: bytes) -> socket.socket:
    """POST /api/v1/apply with its headers and the first half of its body: a slow client's apply. Sent with
    `Expect: 100-continue`, which uvicorn answers when the handler starts reading the body: in flight."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /api/v1/apply HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/yaml\r\n"
                 + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n".encode()
                 + b"Expect: 100-continue\r\n\r\n")
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, "connection closed before 100 Continue"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    sock.sendall(body[: len(body) // 2])
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def wait_draining(url: str) -> httpx.Response:
    """/healthz once it answers 503 (the signal was handled)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/healthz", timeout=5)
        if r.status_code == 503:
            return r
        time.sleep(0.05)  # polling for the state change the signal causes
    raise AssertionError("the server never started draining")


@pytest.mark.parametrize("served", ["30"], indirect=True)
def test_sigterm_lets_requests_in_flight_finish_and_refuses_new_ones(served: subprocess.Popen[bytes],
                                                                     state_dir: Path, port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    token = read_cli_token(state_dir)
    auth = {"authorization": f"Bearer {token}"}
    upload = open_upload(port, token, CM)
    with httpx.Client(timeout=30, headers=auth) as sse_client, \
            sse_client.stream("GET", f"{url}/api/v1/events/executions") as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        signaled = time.monotonic()
        served.send_signal(signal.SIGTERM)
        refused = wait_draining(url)
        assert refused.headers["retry-after"] == "1" and refused.headers["connection"] == "close"
        assert "stopping" in refused.json()["error"]["message"]
        # The SSE stream: told to reconnect, then a clean end (iter_lines would raise on a truncated chunked body).
        received = list(lines)
    assert "event: reconnect" in received and "retry: 1000" in received, received
    # New requests, read or write, and the long-poll of `apply --wait`: 503.
    assert httpx.get(f"{url}/api/v1/resources", headers=auth, timeout=5).status_code == 503
    assert httpx.get(f"{url}/api/v1/mesh/ack", params={"revision": 10**6}, headers=auth,
                     timeout=5).status_code == 503
    # The upload in flight finishes past the 5 s uvicorn gave requests before (it answered those 500).
    remaining = 5.5 - (time.monotonic() - signaled)
    if remaining > 0:
        time.sleep(remaining)  # the point of the test: a request longer than uvicorn's old 5 s limit
    upload.sendall(CM[len(CM) // 2:])
    status, headers, body = read_response(upload)
    assert status == 200, body
    assert headers.get("connection") == "close"
    assert [(r["name"], r["action"]) for r in json.loads(body)["results"]] == [("slow", "created")]
    assert served.wait(30) in (0, -signal.SIGTERM)
    # It was applied: a server started again on the same state has it.
    again = start(state_dir, port, "30")
    try:
        r = httpx.get(f"{url}/api/v1/resources/ConfigMap/slow", headers=auth, timeout=10)
        assert r.status_code == 200 and r.json()["data"] == {"k": "v"}
    finally:
        again.kill()
        again.wait()


@pytest.mark.parametrize("served", ["1"], indirect=True)
def test_a_request_unfinished_at_the_drain_deadline_answers_503_not_500(served: subprocess.Popen[bytes],
                                                                         state_dir: Path, port: int) -> None:
    upload = open_upload(port, read_cli_token(state_dir), CM)
    served.send_signal(signal.SIGTERM)
    status, headers, body = read_response(upload)  # the rest of the body never comes
    assert status == 503, body
    assert headers["retry-after"] == "1"
    message = json.loads(body)["error"]["message"]
    assert "stopped before the request finished" in message and "GRAYLANE_DRAIN_S" in message
    assert served.wait(30) in (0, -signal.SIGTERM)
