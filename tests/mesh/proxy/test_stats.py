"""The Istio series as Prometheus reads them: counts, cumulative buckets at Envoy's bounds, sums (compiled or not)."""

from __future__ import annotations

import re

from graylane.mesh.proxy.stats import LABELS, Stats


def _labels(code: str) -> tuple[str, ...]:
    return tuple(code if name == "response_code" else f"{name}-v" for name in LABELS)


def _samples(text: str, name: str, code: str) -> dict[str, str]:
    """{le or '': value} of one histogram's (or counter's) lines for the label set with `code`."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name) and f'response_code="{code}"' in line:
            le = re.search(r'le="([^"]+)"', line)
            out[(line.split("{")[0].removeprefix(name) + (le.group(1) if le else ""))] = line.rsplit(" ", 1)[1]
    return out


def test_counts_buckets_and_sums_render_as_prometheus_reads_them() -> None:
    stats = Stats()
    ok, err = _labels("200"), _labels("503")
    for duration_ms, request_bytes, response_bytes in ((0.3, 0, 120), (0.5, 0, 120), (7.0, 2000, 5000)):
        stats.record(ok, duration_ms, request_bytes, response_bytes)
    stats.record(err, 12000.0, 10, 0)
    text = stats.render()

    assert _samples(text, "istio_requests_total", "200") == {"": "3"}  # an int, not 3.0
    assert _samples(text, "istio_requests_total", "503") == {"": "1"}
    duration = _samples(text, "istio_request_duration_milliseconds", "200")
    # Bounds are inclusive (le): 0.3 and 0.5 fall in le="0.5", 7.0 in le="10"; cumulative counts.
    assert duration["_bucket0.5"] == "2" and duration["_bucket1"] == "2" and duration["_bucket5"] == "2"
    assert duration["_bucket10"] == "3" and duration["_bucket+Inf"] == "3" and duration["_count"] == "3"
    assert duration["_sum"] == "7.8"
    sent = _samples(text, "istio_response_bytes", "200")
    assert sent["_bucket100"] == "0" and sent["_bucket250"] == "2" and sent["_bucket5000"] == "3"
    assert sent["_sum"] == "5240" and sent["_count"] == "3"
    received = _samples(text, "istio_request_bytes", "200")
    assert received["_bucket0.5"] == "2" and received["_bucket2500"] == "3" and received["_sum"] == "2000"
    slow = _samples(text, "istio_request_duration_milliseconds", "503")
    assert slow["_bucket10000"] == "0" and slow["_bucket30000"] == "1" and slow["_sum"] == "12000"


def test_a_batch_folds_on_the_next_read_and_keeps_counting_across_batches() -> None:
    stats = Stats()
    ok = _labels("200")
    for _ in range(Stats.BATCH + 5):  # one fold at BATCH, the rest on render
        stats.record(ok, 2.0, 1, 1)
    text = stats.render()
    assert _samples(text, "istio_requests_total", "200") == {"": str(Stats.BATCH + 5)}
    assert _samples(text, "istio_request_duration_milliseconds", "200")["_bucket5"] == str(Stats.BATCH + 5)
    stats.record(ok, 2.0, 1, 1)
    assert _samples(stats.render(), "istio_requests_total", "200") == {"": str(Stats.BATCH + 6)}
