"""Istio's traffic-management tasks (request routing, fault injection, traffic shifting) on our Bookinfo services,
applied with `graylane apply` from the demo's networking/ files onto the local mesh, checked through the gateway."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from graylane.demos.bookinfo import demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

KUBE = demo.DEMO_ROOT / "platform" / "kube"
NET = demo.DEMO_ROOT / "networking"
REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page_kind(html: str) -> str:
    if "Error fetching product reviews" in html:
        return "reviews-error"
    if "Ratings service is currently unavailable" in html:
        return "ratings-error"
    colors = set(re.findall(r'<font color="(\w+)"[^>]*>\s*<span class="glyphicon glyphicon-star"', html))
    if colors in ({"black"}, {"red"}):
        return colors.pop()
    return "none" if not colors and "glyphicon-star" not in html else "mixed"


class Local:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.server_port, self.admin_port, self.gateway_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{self.server_port}",
                    "NO_COLOR": "1"}
        for var in ("GRAYLANE_DATABASE_URL", "HTTP_PROXY", "http_proxy"):
            self.env.pop(var, None)
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=self.env, text=True,
                              capture_output=True, timeout=240)
        if check and proc.returncode != 0:
            logs = ""
            for name in ("server.log", "dataplane.log"):
                log = self.state / "logs" / name
                if log.exists():
                    logs += f"\n--- {name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"graylane {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
                                 + logs)
        return proc

    def apply(self, *files: Path) -> None:
        args = [arg for f in files for arg in ("-f", str(f))]
        self.cli("apply", *args, "--wait")

    @contextlib.contextmanager
    def browser(self, user: str | None = None) -> Iterator[httpx.Client]:
        """A cookie-keeping client, signed in as `user` through the gateway's /login when given."""
        with httpx.Client(base_url=self.gateway, trust_env=False, timeout=30) as client:
            if user is not None:
                resp = client.post("/login", data={"username": user, "passwd": ""},
                                   headers={"referer": f"{self.gateway}/productpage"})
                assert resp.status_code == 302, resp.text
            yield client

    def pages(self, n: int, user: str | None = None, workers: int = 2) -> Counter[str]:
        """Load the page n times as `user` (a few tabs at once) and count what each load showed."""

        def load(_: int) -> str:
            resp = client.get("/productpage")
            assert resp.status_code == 200, resp.text[:300]
            return page_kind(resp.text)

        with self.browser(user) as client, ThreadPoolExecutor(workers) as pool:
            return Counter(pool.map(load, range(n)))


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    state = tmp_path_factory.mktemp("istio-tasks") / "state"
    state.mkdir()
    env = Local(state)
    env.cli("up", "--admin-port", str(env.admin_port), "--gateway-port", f"80={env.gateway_port}")
    try:
        env.apply(KUBE / "bookinfo-reviews-v1.yaml", KUBE / "bookinfo-reviews-v2.yaml",
                  KUBE / "bookinfo-reviews-v3.yaml", NET / "destination-rule-all.yaml",
                  NET / "bookinfo-gateway.yaml", NET / "virtual-service-all-v1.yaml")
        for name in ("productpage-v1", "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"):
            env.cli("rollout", "status", f"deploy/{name}")
        yield env
    finally:
        env.cli("down", check=False)


def test_all_v1_shows_no_stars(local: Local) -> None:
    assert local.pages(10) == {"none": 10}
    assert local.pages(5, user="jason") == {"none": 5}


def test_request_routing_jason_sees_v2(local: Local) -> None:
    local.apply(NET / "virtual-service-reviews-test-v2.yaml")
    assert local.pages(10, user="jason") == {"black": 10}
    assert local.pages(10) == {"none": 10}
    assert local.pages(5, user="alice") == {"none": 5}


def test_ratings_delay_for_jason_times_out_reviews(local: Local) -> None:
    local.apply(NET / "virtual-service-reviews-test-v2.yaml", NET / "virtual-service-ratings-test-delay.yaml")
    with local.browser("jason") as client:
        html = client.get("/productpage").text
    assert "Error fetching product reviews" in html and REVIEWS_UNAVAILABLE in html
    assert "Book Details" in html
    assert local.pages(3) == {"none": 3}  # everyone else is unaffected


def test_ratings_abort_for_jason(local: Local) -> None:
    local.apply(NET / "virtual-service-reviews-test-v2.yaml", NET / "virtual-service-ratings-test-abort.yaml")
    with local.browser("jason") as client:
        html = client.get("/productpage").text
    assert html.count("Ratings service is currently unavailable") == 2
    assert "Error fetching" not in html
    assert local.pages(3) == {"none": 3}


def test_traffic_shifting_50_v3(local: Local) -> None:
    local.apply(NET / "virtual-service-all-v1.yaml")  # ratings back to normal (as the task's cleanup does)
    local.apply(NET / "virtual-service-reviews-50-v3.yaml")
    kinds = local.pages(40)
    assert set(kinds) == {"red", "none"}
    assert 14 <= kinds["red"] <= 26, kinds  # Istio's task: "about 50 %"


def test_reviews_v3_and_jason_v2_v3(local: Local) -> None:
    local.apply(NET / "virtual-service-reviews-v3.yaml")
    assert local.pages(10) == {"red": 10}
    local.apply(NET / "virtual-service-reviews-jason-v2-v3.yaml")
    assert local.pages(5, user="jason") == {"black": 5}
    assert local.pages(5) == {"red": 5}
