"""Access log lines in Istio's default TEXT and JSON shapes."""

import json

from graylane.mesh.proxy.accesslog import format_entry

ENTRY = {"start": 1795632000.25, "method": "GET", "authority": "reviews:9080", "path": "/reviews/0", "status": 503,
         "flags": "UF", "duration_ms": 12.4, "upstream_host": "127.0.0.1:40001",
         "upstream_cluster": "outbound|9080|v2|reviews.default.svc.cluster.local", "request_id": "abc",
         "bytes_sent": 91, "bytes_received": 0, "upstream_service_time": None, "route_name": None}


def test_text_follows_istios_default_format():
    line = format_entry(ENTRY, "text")
    assert line.startswith('[2026-11-25T18:40:00.250Z] "GET /reviews/0 HTTP/1.1" 503 UF ')
    assert ' 0 91 12 - "-" "-" "abc" "reviews:9080" "127.0.0.1:40001" outbound|9080|v2|reviews.default' in line


def test_json_has_istios_keys():
    doc = json.loads(format_entry(ENTRY, "json"))
    assert doc["response_code"] == 503 and doc["response_flags"] == "UF" and doc["duration"] == 12
    assert doc["upstream_host"] == "127.0.0.1:40001" and doc["start_time"] == "2026-11-25T18:40:00.250Z"
    assert doc["upstream_service_time"] is None and doc["protocol"] == "HTTP/1.1"
