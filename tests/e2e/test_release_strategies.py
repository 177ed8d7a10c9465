"""Progressive delivery on the local mesh, through the real proxy: the demo's reviews-progressive pipeline (jason
pinned to v2 by header while everyone else follows 10% then 50%), `graylane release` driving it, an abort inside
the warm window after promotion under load, and a lockstep reviews + ratings switch checked page by page.

Reuses test_article's installation driver and its `local`/`demo` fixtures (a fresh installation for this module).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from tests.e2e.test_article import Local, demo, local, page_kind  # noqa: F401  (fixtures reused)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def load_pages(env: Local, n: int, user: str | None = None, workers: int = 2) -> Counter[str]:
    """n page loads (a few tabs at once), signed in as `user` when given; what each load showed."""
    with httpx.Client(trust_env=False, timeout=30) as client, ThreadPoolExecutor(workers) as pool:
        if user is not None:
            resp = client.post(env.productpage.replace("/productpage", "/login"),
                               data={"username": user, "passwd": ""}, headers={"referer": env.productpage})
            assert resp.status_code == 302, resp.text

        def one(_: int) -> str:
            resp = client.get(env.productpage)
            assert resp.status_code == 200, resp.text[:300]
            return page_kind(resp.text)

        return Counter(pool.map(one, range(n)))


READERS = [f"reader{i:02d}" for i in range(20)]  # by the end-user hash: 1 on v2 at 10%, 11 at 50%


def readers_versions(env: Local) -> dict[str, str]:
    """Each signed-in reader's version over 2 page loads: one kind each (sticky), else the test fails."""
    out = {}
    for user in READERS:
        kinds = load_pages(env, 2, user=user, workers=1)
        assert len(kinds) == 1, (user, kinds)
        out[user] = next(iter(kinds))
    return out


def release_status(env: Local, service: str = "reviews") -> dict[str, Any]:
    return json.loads(env.cli("release", "status", service, "-o", "json").stdout)  # type: ignore[no-any-return]


def wait_phase(env: Local, phase: str, step: int | None = None, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = release_status(env)
        if s["phase"] == phase and (step is None or s["step"]["index"] == step):
            return s
        assert s["phase"] not in ("Aborted", "Degraded") or phase in ("Aborted", "Degraded"), s
        assert time.monotonic() < deadline, s
        time.sleep(0.3)


def run_pipeline(env: Local, name: str) -> str:
    match = re.search(r"execution (\w+)", env.cli("pipeline", "run", name).stdout)
    assert match
    return match.group(1)


def test_progressive_steps_header_route_and_weights_together(local: Local, demo: str) -> None:  # noqa: F811
    execution = run_pipeline(local, "reviews-progressive")
    s = wait_phase(local, "Paused", step=2)  # the 30 s pause after 10%
    assert s["weights"] == {"reviews": {"v1": 90, "v2": 10}} and "30s" in s["message"]
    assert {p["name"] for p in s["pods"]} >= {"reviews-v1", "reviews-v2"}
    text = local.cli("release", "status", "reviews").stdout
    assert "Paused" in text and "reviews: v1=90%  v2=10%" in text and "Step:      3/5" in text
    assert load_pages(local, 20, user="jason") == {"black": 20}  # pinned to v2 by the header route
    assert load_pages(local, 100) == {"none": 90, "black": 10}  # everyone else follows the weights
    at_10 = readers_versions(local)  # sticky by the end-user header from this step on
    assert release_status(local)["step"]["index"] == 2  # still inside the 30 s pause at 10%

    local.cli("release", "promote", "reviews")  # skip the rest of the 30 s pause
    s = wait_phase(local, "Paused", step=4)  # the judgment after 50%
    assert s["weights"] == {"reviews": {"v1": 50, "v2": 50}}
    assert load_pages(local, 20, user="jason") == {"black": 20}
    assert load_pages(local, 100) == {"none": 50, "black": 50}
    at_50 = readers_versions(local)
    on_v2 = {u for u, v in at_10.items() if v == "black"}
    assert on_v2 and all(at_50[u] == "black" for u in on_v2), (at_10, at_50)  # canary readers stay on it
    assert len([u for u, v in at_50.items() if v == "black"]) > len(on_v2)  # and the canary's share grows

    watch = subprocess.Popen([sys.executable, "-m", "graylane.cli.main", "release", "status", "reviews", "--watch"],
                             env=local.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    local.cli("release", "promote", "reviews")  # last step done: 100% to v2, header route gone
    s = wait_phase(local, "Promoted")
    assert s["weights"] == {"reviews": {"v2": 100}} and "stays warm" in s["message"]
    assert load_pages(local, 20) == {"black": 20}

    # abort inside the warm window, under load: back to v1 at once, no failed request
    failures: list[str] = []
    kinds: list[tuple[float, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not stop.is_set():
                resp = client.get(local.productpage)
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:100]}")
                kinds.append((time.monotonic(), page_kind(resp.text)))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        local.cli("release", "abort", "reviews")
        answered = time.monotonic()
        wait_phase(local, "Aborted", timeout=30)
        first_v1_only = None
        deadline = time.monotonic() + 10
        while first_v1_only is None and time.monotonic() < deadline:
            recent = [(t, k) for t, k in kinds if t > answered]
            # from some load on, every page shows v1: when did that start?
            for i, (t, _) in enumerate(recent):
                if all(k == "none" for _, k in recent[i:]) and len(recent) - i >= 20:
                    first_v1_only = t
                    break
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert first_v1_only is not None and first_v1_only - answered < 1.0, first_v1_only
    assert watch.wait(timeout=60) == 1  # the CI gate says no
    watch_out = watch.stdout.read() if watch.stdout else ""
    assert "Aborted" in watch_out
    done = local.wait_execution(execution)
    assert done["status"] == "TERMINAL"
    assert local.deployment_exists("reviews-v1") and local.deployment_exists("reviews-v2")  # nothing redeployed
    vs = local.api.get("/api/v1/resources/VirtualService/reviews", params={"namespace": "default"}).json()
    assert [r.get("name") for r in vs["spec"]["http"]] == [None]  # the jason route is gone
    assert load_pages(local, 10, user="jason") == {"none": 10}


def stars(html: str) -> str:
    """none (reviews v1), v1 (Reviewer2 has 4 stars: ratings v1) or v2 (3 stars: ratings v2's local database)."""
    kind = page_kind(html)
    if kind == "none":
        return "none"
    filled = len(re.findall(r'class="glyphicon glyphicon-star"', html))
    return {9: "reviews-v2+ratings-v1", 8: "reviews-v2+ratings-v2"}.get(filled, f"{kind}/{filled}")


def test_lockstep_switch_no_page_mixes_steps(local: Local, demo: str) -> None:  # noqa: F811
    """reviews and ratings go from v1 to v2 in one snapshot: before, pages show no stars (reviews v1 never calls
    ratings); after, v2 stars from ratings v2. A page with reviews v2 but ratings v1 would be a mixed step."""
    shipped = json.loads(local.cli("pipeline", "export", "reviews-ratings-lockstep").stdout)
    switch = {k: v for k, v in shipped.items() if k not in ("id", "name")}
    switch["name"] = "lockstep-switch"
    switch["stages"][1]["steps"] = [{"pause": {}}]  # hold at 100% v1, then Promote full: one switch
    switch["stages"][1]["scaleDownDelay"] = 0
    path = local.state / "lockstep-switch.json"
    path.write_text(json.dumps(switch))
    local.cli("pipeline", "import", str(path))
    execution = run_pipeline(local, "lockstep-switch")
    wait_phase(local, "Paused")
    seen: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not stop.is_set():
                resp = client.get(local.productpage)
                assert resp.status_code == 200
                seen.append(stars(resp.text))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        local.cli("release", "promote", "reviews", "--full")
        assert local.wait_execution(execution)["status"] == "SUCCEEDED"
        count = len(seen)
        while len(seen) < count + 30:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(seen) == {"none", "reviews-v2+ratings-v2"}, Counter(seen)
    assert seen[-30:] == ["reviews-v2+ratings-v2"] * 30
    s = release_status(local, "ratings")
    assert s["weights"] == {"reviews": {"v2": 100}, "ratings": {"v2": 100}} and s["phase"] == "Healthy"


def test_blue_green_preview_by_cookie_switch_and_instant_abort(local: Local, demo: str) -> None:  # noqa: F811
    """After the lockstep test everyone sees reviews v2 (black stars). A blueGreen stage previews v3 (red stars) to
    a browser with the cookie `preview=v3`, switches everyone in one snapshot, and an abort inside scaleDownDelay
    brings v2 back at once, under load, with no failed request."""
    v3 = (local.state / "demo" / "bookinfo" / "platform" / "kube" / "bookinfo-reviews-v3.yaml").read_text()
    pipeline = {"application": "bookinfo", "name": "reviews-blue-green", "stages": [
        {"refId": "1", "type": "deployManifest", "name": "deploy reviews v3", "account": "local", "source": "text",
         "skipExpressionEvaluation": True, "manifests": [v3, {
             "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
             "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}}
                                                     for v in ("v1", "v2", "v3")]}}]},
        {"refId": "2", "requisiteStageRefIds": ["1"], "type": "blueGreen", "name": "reviews v2 -> v3",
         "account": "local", "service": "reviews", "activeSubset": "v2", "previewSubset": "v3",
         "preview": {"cookie": {"preview": "v3"}}, "scaleDownDelay": "60s"}]}
    path = local.state / "blue-green.json"
    path.write_text(json.dumps(pipeline))
    local.cli("pipeline", "import", str(path))
    execution = run_pipeline(local, "reviews-blue-green")
    wait_phase(local, "Paused")
    with httpx.Client(trust_env=False, timeout=30, cookies={"preview": "v3"}) as previewer:
        assert Counter(page_kind(previewer.get(local.productpage).text) for _ in range(10)) == {"red": 10}
    assert load_pages(local, 20) == {"black": 20}

    local.cli("release", "promote", "reviews")
    s = wait_phase(local, "Promoted")
    assert s["weights"] == {"reviews": {"v3": 100}} and "stays warm" in s["message"]
    assert load_pages(local, 20) == {"red": 20}
    vs = local.api.get("/api/v1/resources/VirtualService/reviews", params={"namespace": "default"}).json()
    assert [r.get("name") for r in vs["spec"]["http"]] == [None]  # the preview route went with the switch

    failures: list[str] = []
    kinds: list[tuple[float, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not stop.is_set():
                resp = client.get(local.productpage)
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:100]}")
                kinds.append((time.monotonic(), page_kind(resp.text)))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        local.cli("release", "abort", "reviews")
        answered = time.monotonic()
        assert local.wait_execution(execution)["status"] == "TERMINAL"
        while len([k for t, k in kinds if t > answered]) < 60:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    after = [(t - answered, k) for t, k in kinds if t > answered]
    late_red = [t for t, k in after if k != "black"]
    assert not late_red or max(late_red) < 1.0, late_red  # every page after the first second shows v2 again
    assert [k for _, k in after[-30:]] == ["black"] * 30
