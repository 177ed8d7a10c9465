"""The article end to end on the local mesh: `graylane demo bookinfo` deploys the baseline with the article's first
pipeline; the reviews canary (the second pipeline) is started, judged at 50 %, ended, started again and promoted.

Everything is real: `graylane` CLI subprocesses, the control plane, the data plane and six Bookinfo processes; page
loads go through the gateway listener like a browser's.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


CANARY_STAGES = ("设置灰度比例", "是否全量发布")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page_kind(html: str) -> str:
    """black / red / none (no stars and no rating error) / error, as a reader of the page sees it."""
    if "Error fetching" in html or "Ratings service is currently unavailable" in html:
        return "error"
    colors = set(re.findall(r'<font color="(\w+)"[^>]*>\s*<span class="glyphicon glyphicon-star"', html))
    if colors == {"black"}:
        return "black"
    if colors == {"red"}:
        return "red"
    return "none" if not colors and "glyphicon-star" not in html else "mixed"


class Local:
    """One private Graylane installation (state folder, ports) driven through the CLI."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.server_port, self.admin_port, self.gateway_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{self.server_port}",
                    "NO_COLOR": "1", "COLUMNS": "200", "GRAYLANE_USER": "alice"}
        for var in ("GRAYLANE_DATABASE_URL", "HTTP_PROXY", "http_proxy"):
            self.env.pop(var, None)
        # keep-alive shorter than the server's (uvicorn closes idle connections after 5 s): a pooled connection is
        # never reused just as the server closes it (a reset on the next request, seen under load)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.server_port}", trust_env=False, timeout=30,
                                limits=httpx.Limits(keepalive_expiry=2.0))
        self.productpage = f"http://127.0.0.1:{self.gateway_port}/productpage"

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            logs = ""
            for name in ("server.log", "dataplane.log"):
                log = self.state / "logs" / name
                if log.exists():
                    logs += f"\n--- {name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"graylane {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
                                 + logs)
        return proc

    def pages(self, n: int, workers: int = 2) -> Counter[str]:
        """Load the page n times (a few browsers at once) and count what each load showed."""

        def load(_: int) -> str:
            resp = client.get(self.productpage)
            assert resp.status_code == 200, resp.text[:300]
            return page_kind(resp.text)

        with httpx.Client(trust_env=False, timeout=30) as client, ThreadPoolExecutor(workers) as pool:
            return Counter(pool.map(load, range(n)))

    def execution(self, execution_id: str) -> dict[str, Any]:
        return self.api.get(f"/api/v1/executions/{execution_id}").json()

    def stage(self, execution_id: str, name: str) -> dict[str, Any]:
        [stage] = [s for s in self.execution(execution_id)["stages"] if s["name"] == name]
        return stage

    def wait_stage(self, execution_id: str, name: str, status: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.stage(execution_id, name)["status"]) != status:
            assert current not in ("TERMINAL", "CANCELED", "STOPPED"), self.execution(execution_id)
            assert time.monotonic() < deadline, f"{name} is {current}, not {status}"
            time.sleep(0.2)

    def wait_execution(self, execution_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (execution := self.execution(execution_id))["status"] in ("RUNNING", "NOT_STARTED", "BUFFERED"):
            assert time.monotonic() < deadline, execution
            time.sleep(0.2)
        return execution

    def start_canary(self) -> str:
        out = self.cli("pipeline", "run", "reviews-canary", "-p", "base_version=v1", "-p", "canary_version=v2").stdout
        match = re.search(r"execution (\w+)", out)
        assert match, out
        return match.group(1)

    def edges(self) -> set[tuple[str, str]]:
        resp = self.api.get("/api/v1/graph", params={"window": "5m"})
        assert resp.status_code == 200, resp.text
        graph = resp.json()
        label = {n["id"]: n.get("label") or n["id"] for n in graph["nodes"]}
        return {(label.get(e["source"], e["source"]), label.get(e["target"], e["target"])) for e in graph["edges"]}

    def deployment_exists(self, name: str) -> bool:
        resp = self.api.get(f"/api/v1/resources/Deployment/{name}", params={"namespace": "default"})
        assert resp.status_code in (200, 404), resp.text
        return resp.status_code == 200


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    state = tmp_path_factory.mktemp("article") / "state"
    state.mkdir()
    env = Local(state)
    try:
        yield env
    finally:
        env.cli("down", check=False)
        env.api.close()


@pytest.fixture(scope="module")
def demo(local: Local) -> str:
    """`graylane demo bookinfo` on a fresh installation: starts the mesh and runs the baseline."""
    return local.cli("demo", "bookinfo", "--port", str(local.server_port), "--admin-port", str(local.admin_port),
                     "--gateway-port", f"80={local.gateway_port}").stdout


def test_demo_deploys_the_baseline_and_prints_next_steps(local: Local, demo: str) -> None:
    assert local.productpage in demo
    assert f"http://127.0.0.1:{local.server_port}/" in demo
    assert "graylane pipeline run reviews-canary -p base_version=v1 -p canary_version=v2" in demo
    assert "graylane judge" in demo and "canary_ratio=50" in demo
    executions = local.api.get("/api/v1/executions", params={"pipeline": "bookinfo-baseline"}).json()
    assert [e["status"] for e in executions] == ["SUCCEEDED"]
    repo = local.state / "demo" / "bookinfo"
    assert (repo / ".git").is_dir() and (repo / "platform/kube/bookinfo-reviews-v2.yaml").is_file()
    for name in ("productpage-v1", "details-v1", "reviews-v1", "ratings-v1"):
        assert local.deployment_exists(name), name
    assert not local.deployment_exists("reviews-v2")


def test_baseline_pages_have_no_stars_and_ratings_is_not_called(local: Local, demo: str) -> None:
    assert local.pages(30) == {"none": 30}
    edges = local.edges()
    # The graph scrapes the data plane when asked; a scrape that fails under load is retried by the next ask.
    deadline = time.monotonic() + 10
    while ("productpage-v1", "reviews-v1") not in edges and time.monotonic() < deadline:
        time.sleep(0.5)
        edges = local.edges()
    assert ("productpage-v1", "reviews-v1") in edges
    assert not [e for e in edges if e[1].startswith("ratings")], edges


def test_canary_at_50_percent_then_end(local: Local, demo: str) -> None:
    execution = local.start_canary()
    local.wait_stage(execution, "设置灰度比例", "RUNNING")
    assert local.deployment_exists("reviews-v2")
    # Before the ratio takes effect, the baseline VirtualService still sends everything to v1.
    assert local.pages(4) == {"none": 4}
    refused = local.cli("judge", execution, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=150",
                        check=False)
    assert refused.returncode != 0 and "canary_ratio" in (refused.stderr + refused.stdout)
    assert local.stage(execution, "设置灰度比例")["status"] == "RUNNING"
    local.cli("judge", execution, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=50")
    local.wait_stage(execution, "是否全量发布", "RUNNING")

    assert local.pages(200) == {"black": 100, "none": 100}

    edges = local.edges()
    assert {("productpage-v1", "reviews-v1"), ("productpage-v1", "reviews-v2"),
            ("reviews-v2", "ratings-v1")} <= edges, edges

    local.cli("judge", execution, "--stage", "是否全量发布", "--continue", "--input", "结束发布")
    done = local.wait_execution(execution)
    assert done["status"] == "SUCCEEDED"
    status = {s["name"]: s["status"] for s in done["stages"]}
    assert status["结束发布"] == "SUCCEEDED"
    assert status["全量发布"] == status["删除基准版本"] == "SKIPPED"
    assert local.deployment_exists("reviews-v1") and local.deployment_exists("reviews-v2")
    assert local.pages(10) == {"black": 5, "none": 5}  # the canary share stays as it was


def test_canary_full_release(local: Local, demo: str) -> None:
    execution = local.start_canary()
    local.wait_stage(execution, "设置灰度比例", "RUNNING")
    local.cli("judge", execution, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=50")
    local.wait_stage(execution, "是否全量发布", "RUNNING")
    local.cli("judge", execution, "--stage", "是否全量发布", "--continue", "--input", "全量发布")
    done = local.wait_execution(execution)
    assert done["status"] == "SUCCEEDED", done
    status = {s["name"]: s["status"] for s in done["stages"]}
    assert status["全量发布"] == status["删除基准版本"] == "SUCCEEDED" and status["结束发布"] == "SKIPPED"
    assert local.pages(20) == {"black": 20}
    assert not local.deployment_exists("reviews-v1")
    vs = local.api.get("/api/v1/resources/VirtualService/reviews", params={"namespace": "default"}).json()
    assert vs["spec"]["http"][0]["route"] == [{"destination": {"host": "reviews", "subset": "v2"}, "weight": 100}]


def test_the_next_release_from_v2_to_v3_through_the_cli(local: Local, demo: str) -> None:
    """The same pipeline with other parameters, typed as a user would (issue 20): v2 is the baseline now, v3 the
    canary; its manifest and a DestinationRule with both subsets are deployed, 50% gives half red pages, the full
    release leaves v3 alone. A version the repository has no manifest for is refused before anything moves."""
    out = local.cli("pipeline", "run", "reviews-canary", "-p", "base_version=v2", "-p", "canary_version=v9").stdout
    match = re.search(r"execution (\w+)", out)
    assert match, out
    refused = local.wait_execution(match.group(1))
    assert refused["status"] == "TERMINAL", refused
    error = next(s for s in refused["stages"] if s["refId"] == "1")["context"]["exception"]["details"]["error"]
    assert "platform/kube/bookinfo-reviews-v9.yaml" in error, error
    assert not local.deployment_exists("reviews-v9")
    assert local.pages(10) == {"black": 10}  # still all v2

    out = local.cli("pipeline", "run", "reviews-canary", "-p", "base_version=v2", "-p", "canary_version=v3").stdout
    execution = re.search(r"execution (\w+)", out)
    assert execution, out
    local.wait_stage(execution.group(1), "设置灰度比例", "RUNNING")
    assert local.deployment_exists("reviews-v3")
    dr = local.api.get("/api/v1/resources/DestinationRule/reviews", params={"namespace": "default"}).json()
    assert {s["name"] for s in dr["spec"]["subsets"]} >= {"v2", "v3"}, dr
    local.cli("judge", execution.group(1), "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=50")
    local.wait_stage(execution.group(1), "是否全量发布", "RUNNING")
    assert local.pages(100) == {"black": 50, "red": 50}
    local.cli("judge", execution.group(1), "--stage", "是否全量发布", "--continue", "--input", "全量发布")
    done = local.wait_execution(execution.group(1))
    assert done["status"] == "SUCCEEDED", done
    assert local.pages(20) == {"red": 20}
    assert not local.deployment_exists("reviews-v2")
