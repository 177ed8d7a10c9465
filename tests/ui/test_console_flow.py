"""The article's release through the web console in a real browser (Playwright driving Debian's chromium).

Start reviews-canary from its form, type 50 at 设置灰度比例 (after a refused 150), watch ~50% on the reviews
edges in the topology, choose 全量发布, and see reviews-v1 gone. Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.slow, pytest.mark.timeout(480)]

from playwright import sync_api  # noqa: E402
from tests import system  # noqa: E402
from tests.e2e import test_article as article  # noqa: E402  shares the article's local-installation driver
from tests.e2e import test_observability as observability  # noqa: E402  and its paced page loads
from tests.ui.signin import login_link  # noqa: E402

from graylane.settings import read_cli_token  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[article.Local]:
    state = tmp_path_factory.mktemp("console") / "state"
    state.mkdir()
    # Every request traced (Istio's default samples 1%): the judgment's evidence must have sample traces of each
    # version to link, whatever the random draw (docs/observability.md: trace_sampling in mesh-options.json).
    (state / "mesh-options.json").write_text(json.dumps({"trace_sampling": 100.0}))
    local = article.Local(state)
    local.cli("up", "--admin-port", str(local.admin_port), "--gateway-port", f"80={local.gateway_port}")
    try:
        local.cli("demo", "bookinfo")
        yield local
    finally:
        local.cli("down", check=False)
        local.api.close()


class SignedInBrowser:
    """Each new page is a fresh browser profile signed in as the operator does it: by opening the one-time
    link `graylane status` prints (asked for here with the CLI token from the state folder)."""

    def __init__(self, browser: Any, mesh: article.Local) -> None:
        self.browser, self.mesh = browser, mesh

    def new_page(self, **kw: Any) -> Any:
        page = self.browser.new_context(**kw).new_page()
        token = read_cli_token(self.mesh.state)
        assert token, "the control plane wrote no CLI token to the state folder"
        page.goto(login_link(self.mesh.api, token))
        return page


@pytest.fixture(scope="module")
def browser(mesh: article.Local) -> Iterator[object]:
    chromium = system.require_program("chromium", "chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield SignedInBrowser(b, mesh)
        finally:
            b.close()


def reviews_split(page) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Traffic distribution on productpage-v1's reviews edges, read from the live cytoscape graph
    (only once each edge carries at least 10 requests in the window, so the share means something)."""
    return page.evaluate("""() => {
        const cy = window.graylaneCy; const out = {};
        if (!cy) return out;
        cy.edges().forEach(e => {
          const d = e.data(), src = cy.getElementById(d.source).data('label');
          const dst = cy.getElementById(d.target).data('label');
          if (src === 'productpage-v1' && d.service === 'reviews' && d.requests >= 10) out[dst] = d.distribution;
        });
        return out;
    }""")


def test_the_article_release_through_the_console(mesh, browser) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{mesh.server_port}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)

    # Start reviews-canary from the form generated from its parameterConfig.
    page.goto(f"{base}/pipelines")
    page.get_by_role("row").filter(has=page.get_by_role("cell", name="reviews-canary", exact=True)) \
        .get_by_role("link", name="Start…").click()  # not reviews-canary-httproute
    assert page.get_by_label("基准版本 (base version)").input_value() == "v1"
    page.get_by_label("灰度版本 (canary version)").fill("v2")
    with page.expect_request("**/ui/pipelines/*/start") as sent:
        page.get_by_role("button", name="Start").click()
    # console.js sends the start with an Idempotency-Key of its own (a UUID): a re-send starts nothing new
    assert re.fullmatch(r"[0-9a-f-]{36}", sent.value.headers.get("idempotency-key", "")), sent.value.headers
    page.wait_for_url("**/executions/*")
    execution_id = page.url.rsplit("/", 1)[-1]

    # The judgment form appears live (SSE) once the canary is deployed.
    ratio = page.get_by_label("灰度比例 (%)")
    ratio.wait_for(timeout=120_000)
    ratio.fill("150")
    page.get_by_role("button", name="Continue").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "above the maximum 100" in alert.inner_text() and "nothing was sent" in alert.inner_text()
    assert mesh.stage(execution_id, "设置灰度比例")["status"] == "RUNNING"

    # Keyboard only: tab to the ratio field, type 50, press Enter.
    page.locator("body").click(position={"x": 5, "y": 5})
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.name") == "cp_canary_ratio":
            break
    else:
        pytest.fail("the canary ratio field cannot be reached with the keyboard")
    page.keyboard.press("Control+A")
    page.keyboard.type("50")
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text="Continued").wait_for()
    mesh.wait_stage(execution_id, "是否全量发布", "RUNNING")
    judged = mesh.stage(execution_id, "设置灰度比例")
    assert judged["context"]["customParams"]["canary_ratio"] == "50"
    assert judged["context"]["lastModifiedBy"] == "alice"  # GRAYLANE_USER of the CLI that started the mesh

    # The topology shows productpage-v1 calling both versions, about half each.
    with observability.PacedLoad(mesh.productpage, rps=20, threads=1):  # readers refreshing the page
        topo = browser.new_page(viewport={"width": 1400, "height": 900})
        topo.goto(f"{base}/topology?window=1m")
        topo.select_option("#g-labels", "distribution")
        deadline = time.monotonic() + 90
        split: dict[str, float] = {}
        while time.monotonic() < deadline:
            split = reviews_split(topo)
            if {"reviews-v1", "reviews-v2"} <= set(split) and all(40 <= split[v] <= 60 for v in split):
                topo.screenshot(path=str(ARTIFACTS / "topology-canary-50.png"), full_page=True)
                break
            topo.wait_for_timeout(1000)
        else:
            topo.screenshot(path=str(ARTIFACTS / "topology-canary-50.png"), full_page=True)
            print("graph API:", mesh.api.get("/api/v1/graph", params={"window": "1m"}).text[:3000])
        assert {"reviews-v1", "reviews-v2"} <= set(split), split
        assert 40 <= split["reviews-v1"] <= 60 and 40 <= split["reviews-v2"] <= 60, split

        # The topology knows the release: configured weight beside the observed share on the reviews edges,
        # and the edge's side panel names the execution, the judgment waiting and its buttons.
        topo.wait_for_function("() => window.graylaneCy.edges().some(e => (e.data('label') || '').includes('cfg 50%'))")
        topo.get_by_text("Nodes and edges as a table").click()
        topo.get_by_role("button", name="productpage-v1 → reviews-v2").click()
        side = topo.locator("#g-side")
        side.get_by_text("reviews-canary · waiting 是否全量发布 · configured 50%").wait_for()
        side.get_by_role("button", name="全量发布").wait_for()
        side.get_by_role("button", name="结束发布").wait_for()
        topo.locator("#g-traffic circle.traffic-dot").first.wait_for(state="attached")  # traffic animation
        topo.screenshot(path=str(ARTIFACTS / "topology-knows-the-release.png"), full_page=True)

        # On a 390 px phone the graph keeps its height and the page does not scroll sideways.
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(f"{base}/topology?window=1m")
        phone.wait_for_function("window.graylaneCy && window.graylaneCy.nodes().length >= 4")
        box = phone.locator("#cy").bounding_box()
        assert box and box["height"] >= 300 and box["width"] >= 300, box
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        phone.screenshot(path=str(ARTIFACTS / "topology-canary-50-390px.png"), full_page=True)

    # Choose full release; the execution finishes and reviews-v1 is removed.
    page.goto(f"{base}/executions/{execution_id}")
    header = page.locator("#release")  # configured weight beside the share observed in the last minute
    header.get_by_role("heading", name="Waiting for you: 是否全量发布").wait_for()
    observed = header.get_by_role("row", name=re.compile(r"^v2 ")).inner_text()
    # configured 50%, then the observed share (a random 50/50 split of ~100 requests: allow 25-75%)
    assert re.search(r"50%.*\b([2-6]\d|7[0-5])(\.\d)?%", observed.replace("\n", " ")), observed
    header.screenshot(path=str(ARTIFACTS / "release-header-canary-50.png"))
    # The evidence's sample traces of the canary open a trace v2 of reviews served: the data plane tags each span
    # with its workload's version (istio.canonical_revision), as Istio's sidecars do.
    header.get_by_role("row", name=re.compile(r"^v2 ")).get_by_role(
        "link", name=re.compile(r"^Trace \w+ of reviews v2")).first.click()
    page.locator("tr[data-service='reviews.default'][data-version='v2']").first.wait_for()
    assert page.locator("tr[data-service='reviews.default'][data-version='v1']").count() == 0
    page.go_back()
    # The release's timeline: the judgment, then the weights the next stage set, on one axis.
    timeline = page.locator("#timeline")
    timeline.locator("[data-lane='Judgments']").get_by_role(
        "link", name="alice judged 设置灰度比例: continue (canary_ratio=50)").wait_for()
    timeline.locator("[data-lane='Weights']").get_by_role(
        "link", name=re.compile(r"^reviews weights v1 50% · v2 50% ")).wait_for()
    timeline.screenshot(path=str(ARTIFACTS / "timeline-canary-50.png"))
    asked: list[str] = []  # an irreversible choice: the browser asks first, listing what it does
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="全量发布").click()
    page.get_by_role("status").filter(has_text="Continued").wait_for()
    assert asked and "delete deployment reviews-v1" in asked[0], asked
    done = mesh.wait_execution(execution_id)
    assert done["status"] == "SUCCEEDED"
    page.reload()
    page.locator("#exe-status", has_text="SUCCEEDED").wait_for()
    page.screenshot(path=str(ARTIFACTS / "execution-full-release.png"), full_page=True)
    assert "全量发布" in page.content() and "alice" in page.content()

    page.goto(f"{base}/resources/VirtualService/default/reviews")  # who made each change, and who approved it
    page.get_by_text("approved by alice (是否全量发布: 全量发布)").wait_for()
    page.locator(f"table.history a[href^='/executions/{execution_id}#stage-']").first.wait_for()

    page.goto(f"{base}/resources?kind=Deployment")
    names = page.locator("table.list td a").all_inner_texts()
    assert "reviews-v2" in names and "reviews-v1" not in names
    page.screenshot(path=str(ARTIFACTS / "resources-after-release.png"), full_page=True)
