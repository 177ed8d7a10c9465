"""`#fromUrl` and friends: off by default; when on, public http(s) only, bounded size and time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from graylane.expressions import ExpressionError, evaluate_expression


class _Handler(BaseHTTPRequestHandler):
    release = threading.Event()
    seen_hosts: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen_hosts.append(self.headers.get("Host", ""))
        if self.path == "/config.json":
            self._send(200, b'{"ratio": 25, "name": "reviews"}', {"Content-Type": "application/json"})
        elif self.path == "/config.yaml":
            self._send(200, "ratio: 10\nname: 灰度\n".encode(), {"Content-Type": "text/yaml; charset=utf-8"})
        elif self.path == "/big":
            self._send(200, b"x" * 50_000)
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "http://127.0.0.1:1/"})
        elif self.path == "/slow":
            self.release.wait(10)  # held until the test finishes
            self._send(200, b"late")
        else:
            self._send(404, b"no")


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.release.clear()
    _Handler.seen_hosts.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _Handler.release.set()
    httpd.shutdown()
    httpd.server_close()


def _trusting_loopback(make_ctx: Any, **extra: Any) -> Any:
    return make_ctx(allow_url_functions=True, url_allowed_networks=("127.0.0.0/8",), **extra)


@pytest.mark.parametrize(("url", "message"), [
    pytest.param("ftp://example.com/x", "only http and https URLs are allowed", id="scheme"),
    pytest.param("file:///etc/passwd", "only http and https URLs are allowed", id="file-scheme"),
    pytest.param("http://127.0.0.1:9/x", "resolves to 127.0.0.1, a loopback, link-local or private", id="loopback"),
    pytest.param("http://localhost/x", "host 'localhost' is not allowed", id="localhost-name"),
    pytest.param("http://169.254.169.254/latest/meta-data", "resolves to 169.254.169.254", id="link-local"),
    pytest.param("http://10.1.2.3/x", "resolves to 10.1.2.3", id="private-10"),
    pytest.param("http://192.168.0.1/x", "resolves to 192.168.0.1", id="private-192"),
    pytest.param("http://[::1]/x", "resolves to ::1", id="loopback-v6"),
    pytest.param("http://0.0.0.0/x", "resolves to 0.0.0.0", id="unspecified"),
    pytest.param("http://db.internal/x", "host 'db.internal' is not allowed", id="internal-suffix"),
    pytest.param("http:///x", "the URL has no host", id="no-host"),
])
def test_enabled_url_functions_refuse_non_public_targets(make_ctx: Any, url: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate_expression(f"#fromUrl('{url}')", make_ctx(allow_url_functions=True))


def test_disabled_by_default_even_for_allowed_networks(make_ctx: Any, server: str) -> None:
    with pytest.raises(ExpressionError, match="#jsonFromUrl is disabled"):
        evaluate_expression(f"#jsonFromUrl('{server}/config.json')", make_ctx(url_allowed_networks=("127.0.0.0/8",)))
    assert _Handler.seen_hosts == []


def test_json_and_yaml_from_an_operator_trusted_network(make_ctx: Any, server: str) -> None:
    ctx = _trusting_loopback(make_ctx)
    assert evaluate_expression(f"#jsonFromUrl('{server}/config.json')['ratio']", ctx) == 25
    assert evaluate_expression(f"#yamlFromUrl('{server}/config.yaml')", ctx) == {"ratio": 10, "name": "灰度"}
    assert evaluate_expression(f"#fromUrl('{server}/config.json').contains('reviews')", ctx) is True
    assert _Handler.seen_hosts[0] == server.removeprefix("http://")


def test_size_limit(make_ctx: Any, server: str) -> None:
    with pytest.raises(ExpressionError, match="the response is larger than 1000 bytes"):
        evaluate_expression(f"#fromUrl('{server}/big')", _trusting_loopback(make_ctx, url_max_bytes=1000))


def test_time_limit(make_ctx: Any, server: str) -> None:
    with pytest.raises(ExpressionError, match="took longer than 0.3s"):
        evaluate_expression(f"#fromUrl('{server}/slow')", _trusting_loopback(make_ctx, url_timeout_s=0.3))


def test_redirects_are_not_followed(make_ctx: Any, server: str) -> None:
    with pytest.raises(ExpressionError, match="HTTP 302"):
        evaluate_expression(f"#fromUrl('{server}/redirect')", _trusting_loopback(make_ctx))


def test_http_errors_are_expression_errors(make_ctx: Any, server: str) -> None:
    with pytest.raises(ExpressionError, match="HTTP 404"):
        evaluate_expression(f"#fromUrl('{server}/missing')", _trusting_loopback(make_ctx))
