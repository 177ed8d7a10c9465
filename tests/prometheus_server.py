"""A real Prometheus for tests: over recorded samples (OpenMetrics text -> `promtool tsdb create-blocks-from
openmetrics` -> `prometheus` on a free loopback port, the recipe docs/kubernetes.md gives for replaying a
recording), or scraping a live target. Needs the `prometheus` system part (tests/system.py).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests import system


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def backfilled_prometheus(root: Path, openmetrics: str, port: int | None = None) -> Iterator[str]:
    """Yield the URL of a Prometheus serving exactly the samples in `openmetrics` (ends with `# EOF`)."""
    system.require_program("prometheus", "prometheus", "promtool")
    (root / "series.om").write_text(openmetrics)
    data = root / "data"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(root / "series.om"), str(data)],
                   check=True, capture_output=True, timeout=120)
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    with _prometheus(root, data, port) as url:
        yield url


@contextlib.contextmanager
def scraping_prometheus(root: Path, target: str, interval: str = "1s", port: int | None = None) -> Iterator[str]:
    """Yield the URL of a Prometheus scraping `target` (host:port, path /metrics) every `interval`, live."""
    system.require_program("prometheus", "prometheus", "promtool")
    (root / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"scrape_configs:\n- job_name: mesh\n  static_configs:\n  - targets: ['{target}']\n")
    with _prometheus(root, root / "data", port) as url:
        yield url


@contextlib.contextmanager
def _prometheus(root: Path, data: Path, port: int | None) -> Iterator[str]:
    port = port or free_port()
    log = (root / "prometheus.log").open("w")
    proc = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                             f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=30d",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a loaded 2-core CI machine can be slow to open the TSDB
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prometheus did not start:\n" + (root / "prometheus.log").read_text()[-2000:])
            time.sleep(0.2)  # waiting for a real process to open its TSDB
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
