"""The telemetry loop against a stand-in data plane admin port on loopback: scrapes, failed scrapes, /metrics relay."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import anyio
import pytest

from graylane.mesh.telemetry.component import Telemetry
from graylane.mesh.telemetry.topology import GraphOptions

from .istio_samples import PP, R1, exposition, labels


class Admin:
    """Serves `/stats/prometheus` with `self.count` requests productpage-v1 -> reviews-v1, or `self.status`."""

    def __init__(self) -> None:
        self.count, self.status = 0, 200
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = exposition([(labels("source", PP, R1, "reviews", 200), admin.count, 5.0)]).encode() \
                    if self.path.startswith("/stats") else b'{"spans": [], "next": 0}'
                self.send_response(admin.status if self.path.startswith("/stats") else 200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch):
    a = Admin()
    monkeypatch.setenv("GRAYLANE_DATAPLANE_ADMIN", a.url)
    yield a
    a.server.shutdown()
    a.server.server_close()


def test_failed_scrapes_are_not_recorded_and_do_not_double_count(admin: Admin) -> None:
    async def main() -> None:
        t = Telemetry(SimpleNamespace(components={}, store=None))
        admin.count = 100
        assert await t.scrape_once()
        admin.status = 500  # the data plane is busy or restarting
        assert not await t.scrape_once()
        admin.status, admin.count = 200, 130
        assert await t.scrape_once()
        graph = t.graph(GraphOptions(window=600))
        [edge] = graph["edges"]
        assert edge["requests"] == 30  # not 130: the failed scrape left no empty baseline behind
        admin.count = 140
        text = await t.metrics_text_live()  # what Prometheus gets: the data plane's counters as of now
        assert 'reporter="source"' in text and text.count("istio_requests_total{") == 1
        assert "} 140" in text.split("istio_requests_total{")[1].splitlines()[0]
        admin.status = 500
        assert "} 130" in (await t.metrics_text_live()).split("istio_requests_total{")[1].splitlines()[0]
        await t.stop()

    anyio.run(main)


def test_the_local_targets_traffic_query_reads_the_meshs_scraped_counters(admin: Admin) -> None:
    """Target.traffic on the local account: the increase over the window of what the data plane reported, filtered
    by reporter and namespace the way a Kubernetes account's Prometheus filters (targets/base.py)."""
    from graylane.errors import GraylaneError
    from graylane.targets.local import LocalTarget

    async def main() -> None:
        t = Telemetry(SimpleNamespace(components={}, store=None))
        target = LocalTarget(store=None, telemetry=t)
        admin.count = 100
        assert await t.scrape_once()
        admin.count = 130
        assert await t.scrape_once()
        [sample] = await target.traffic("default", window="10m", reporter="source")
        assert sample.requests == 30 and sample.errors == 0
        assert sample.labels["destination_workload"] == "reviews-v1"
        assert await target.traffic("default", window="10m") == []  # reporter="destination" by default
        assert await target.traffic("bookinfo", window="10m", reporter="source") == []
        await t.stop()
        with pytest.raises(GraylaneError, match="telemetry is not running"):
            await LocalTarget(store=None).traffic()

    anyio.run(main)
