"""PromQL over the local mesh's recorder vs a real Prometheus over the same samples: time per query, memory.

Usage: .venv/bin/python benchmarks/promql.py [--services 20] [--minutes 15] [--repeat 20]

A Bookinfo-sized (and larger, with --services) mesh is recorded as the control plane's telemetry records it: one
scrape a second for `--minutes` of istio_requests_total (both reporters, 2 versions, 3 codes per edge) and the
request-duration histogram (20 buckets). The same samples go into a Recorder (graylane.mesh.telemetry.recorder)
and, through `promtool tsdb create-blocks-from openmetrics`, into Debian's Prometheus. Each query of the list (the
ones canary analysis, Kiali and Grafana send) is run `--repeat` times on both; the median wall time is printed:
Graylane in-process (what the analysis providers call) and through its HTTP API, Prometheus through its HTTP API.
Also the memory the recorded scrapes hold (tracemalloc). Prints figures; asserts nothing. Needs prometheus and promtool.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from graylane.mesh.telemetry.promql_engine import Engine  # noqa: E402
from graylane.mesh.telemetry.recorder import Recorder  # noqa: E402
from graylane.mesh.telemetry.series import labels_of  # noqa: E402

LE = ("0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000", "60000",
      "300000", "600000", "1800000", "3600000", "+Inf")
QUERIES = {
    "flagger success rate": 'sum(rate(istio_requests_total{reporter="destination",destination_workload=~"svc3-v2",'
                            'response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{reporter="destination",'
                            'destination_workload=~"svc3-v2"}[1m])) * 100',
    "flagger p99": 'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{'
                   'reporter="destination",destination_workload=~"svc3-v2"}[1m])) by (le))',
    "kiali edges 1m": 'sum by (source_workload, destination_workload, response_code) '
                      '(rate(istio_requests_total{reporter="source"}[1m]))',
    "p95 by workload 5m": 'histogram_quantile(0.95, sum by (le, destination_workload) '
                          '(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[5m])))',
    "range 10m step 15s": "sum by (destination_version) (rate(istio_requests_total[1m]))",
}


def record(services: int, minutes: int, start: float) -> Iterator[tuple[float, dict]]:
    """The scrapes, one a second (the same each time for the same arguments)."""
    rnd = random.Random(1)
    counts: dict = {}
    buckets: dict = {}
    for i in range(minutes * 60):
        for s in range(services):
            for version in ("v1", "v2"):
                for code in ("200", "404", "503"):
                    for reporter in ("source", "destination"):
                        key = (s, version, code, reporter)
                        counts[key] = counts.get(key, 0.0) + rnd.randint(0, 3 if code == "200" else 1)
                n = rnd.randint(1, 9)
                for k, le in enumerate(LE):
                    buckets[(s, version, le)] = buckets.get((s, version, le), 0.0) + (
                        n if le == "+Inf" else round(n * min(1.0, (k + 1) / 8)))
        requests = {labels_of({"reporter": r, "source_workload": f"svc{s - 1}-v1" if s else "gateway",
                               "destination_workload": f"svc{s}-{v}", "destination_version": v,
                               "destination_service_name": f"svc{s}", "response_code": c}): value
                    for (s, v, c, r), value in counts.items()}
        histogram = {labels_of({"reporter": "destination", "destination_workload": f"svc{s}-{v}",
                                "destination_version": v, "le": le}): value
                     for (s, v, le), value in buckets.items()}
        yield start + i, {"istio_requests_total": requests, "istio_request_duration_milliseconds_bucket": histogram}


def openmetrics(scrapes: Iterator[tuple[float, dict]]) -> str:
    families: dict = {}
    for t, series in scrapes:
        for name, rows in series.items():
            for labels, value in rows.items():
                families.setdefault(name, {}).setdefault(labels, []).append(f"{value!r} {t:.3f}")
    lines = []
    for name, rows in families.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, samples in rows.items():
            text = "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"
            lines.extend(f"{name}{text} {s}" for s in samples)
    return "\n".join(lines + ["# EOF"]) + "\n"


def median_ms(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def http(url: str, path: str, params: dict[str, str]) -> None:
    with urllib.request.urlopen(url + path, data=urllib.parse.urlencode(params).encode(), timeout=60) as resp:
        resp.read()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=20)
    ap.add_argument("--minutes", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install prometheus")
    start = math.floor(time.time()) - args.minutes * 60 - 120 + 0.25
    tracemalloc.start()
    recorder = Recorder(retention=args.minutes * 60 + 60)
    for t, s in record(args.services, args.minutes, start):
        recorder.add(s, at=t)
    held, _peak = tracemalloc.get_traced_memory()  # what the recorder keeps of the scrapes
    tracemalloc.stop()
    times, scrapes = recorder.snapshot()
    series = sum(len(rows) for rows in scrapes[-1].values())
    engine = Engine(recorder)
    end = times[-1] + 0.5
    root = Path(tempfile.mkdtemp(prefix="promql-bench-"))
    (root / "series.om").write_text(openmetrics(record(args.services, args.minutes, start)))
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(root / "series.om"),
                    str(root / "data")], check=True, capture_output=True)
    (root / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = 19090 + random.randint(0, 500)
    proc = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                             f"--storage.tsdb.path={root / 'data'}", "--storage.tsdb.retention.time=30d",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        print(f"{args.services} services, {series} series per scrape, {len(scrapes)} scrapes "
              f"({len(scrapes) * series:,} samples); recorder holds {held / 2**20:.1f} MiB (tracemalloc)")
        print(f"{'query':22} {'graylane in-process':>20} {'prometheus (HTTP)':>18}   (median of {args.repeat}, ms)")
        for name, query in QUERIES.items():
            if name.startswith("range"):
                ours = median_ms(lambda q=query: engine.query_range(q, end - 600, end, 15), args.repeat)
                theirs = median_ms(lambda q=query: http(url, "/api/v1/query_range", {
                    "query": q, "start": f"{end - 600:.3f}", "end": f"{end:.3f}", "step": "15"}), args.repeat)
            else:
                ours = median_ms(lambda q=query: engine.query(q, end), args.repeat)
                theirs = median_ms(lambda q=query: http(url, "/api/v1/query", {"query": q, "time": f"{end:.3f}"}),
                                   args.repeat)
            print(f"{name:22} {ours:20.2f} {theirs:18.2f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
