"""A stand-in for the data plane's admin port (GRAYLANE_DATAPLANE_ADMIN), so a console test's control plane
scrapes real Istio series and pulls real spans without running workloads: productpage-v1 calls reviews-v1 and
reviews-v2 at steady rates, v2 failing `v2_error_share` of its requests; every span pull returns one new trace
per reviews version, tagged as the data plane tags them (istio.canonical_service / istio.canonical_revision).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.telemetry.istio_samples import DET, GW, PP, R1, R2, exposition, labels

RPS = {"v1": 8.0, "v2": 4.0}


class DataPlaneStandIn:
    def __init__(self, v2_error_share: float = 0.25) -> None:
        self.started = time.time()
        self.v2_error_share = v2_error_share
        self.seq = 0
        self.trace_ids: dict[str, list[str]] = {"v1": [], "v2": []}
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.startswith("/stats/prometheus"):
                    body = stand_in.exposition().encode()
                elif self.path.startswith("/spans"):
                    body = json.dumps(stand_in.spans()).encode()
                else:
                    body = b"{}"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def exposition(self) -> str:
        elapsed = time.time() - self.started
        pages = int(elapsed * (RPS["v1"] + RPS["v2"]))
        v1, v2 = int(elapsed * RPS["v1"]), int(elapsed * RPS["v2"])
        v2_bad = int(v2 * self.v2_error_share)
        rows = []
        for reporter in ("source", "destination"):
            rows += [(labels(reporter, GW, PP, "productpage", 200), pages, 30.0),
                     (labels(reporter, PP, DET, "details", 200), pages, 3.0),
                     (labels(reporter, PP, R1, "reviews", 200), v1, 4.0),
                     (labels(reporter, PP, R2, "reviews", 200), v2 - v2_bad, 12.0)]
            if v2_bad:
                rows.append((labels(reporter, PP, R2, "reviews", 503), v2_bad, 12.0))
        return exposition(rows)

    def spans(self) -> dict[str, Any]:
        out = []
        now_us = int(time.time() * 1_000_000)
        with self._lock:
            for version in ("v1", "v2"):
                trace, client, server = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
                self.trace_ids[version].append(trace)
                code = "503" if version == "v2" and self.seq % 4 == 0 and self.v2_error_share else "200"
                base = {"http.method": "GET", "http.status_code": code, "http.url": "http://reviews:9080/reviews/0",
                        "upstream_cluster": f"outbound|9080|{version}|reviews.default.svc.cluster.local"}
                out.append({"traceId": trace, "spanId": client, "parentSpanId": None, "name": "reviews:9080/*",
                            "kind": "client", "service": "productpage.default", "startUs": now_us,
                            "durationUs": 9000, "seq": self.seq,
                            "tags": {**base, "istio.canonical_service": "productpage",
                                     "istio.canonical_revision": "v1"}})
                out.append({"traceId": trace, "spanId": server, "parentSpanId": client, "name": "reviews:9080/*",
                            "kind": "server", "service": "reviews.default", "startUs": now_us + 500,
                            "durationUs": 8000, "seq": self.seq,
                            "tags": {**base, "istio.canonical_service": "reviews",
                                     "istio.canonical_revision": version}})
                self.seq += 1
        return {"spans": out, "next": self.seq}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
