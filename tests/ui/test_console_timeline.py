"""The release at a glance, over time, in Chromium: the execution page's timeline (judgments, revisions, route
weights and each version's error rate on one axis, live), the evidence beside a judgment (each version's 5xx rate
and p95, and sample traces opening a trace of that version), and the topology's traffic animation (its option in
the URL, off for reduced motion).

The control plane scrapes a stand-in data plane admin port (tests/ui/dataplane_standin.py): productpage-v1 calls
reviews v1 and v2, a quarter of v2's requests fail, and spans carry each version's Istio revision tag.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

from playwright.sync_api import expect  # noqa: E402
from tests.ui.canary_pipeline import FULL, RATIO, RELEASE, judgments_only, reviews_routing  # noqa: E402
from tests.ui.console_server import ARTIFACTS, Browser, ConsoleServer, chromium, running_server  # noqa: E402
from tests.ui.dataplane_standin import DataPlaneStandIn  # noqa: E402
from tests.ui.test_console_a11y import AXE, serious_violations  # noqa: E402

from graylane.ui.release import Observed, version_traffic  # noqa: E402

ROUTING_100_0 = reviews_routing(100)


@pytest.fixture(scope="module")
def dataplane() -> Iterator[DataPlaneStandIn]:
    stand_in = DataPlaneStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dataplane: DataPlaneStandIn) -> Iterator[ConsoleServer]:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci` (axe-core is a devDependency in package.json)", pytrace=False)
    state = tmp_path_factory.mktemp("timeline") / "state"
    state.mkdir()
    with running_server(state, env={"GRAYLANE_DATAPLANE_ADMIN": dataplane.url}) as s:
        assert s.api.post("/api/v1/apply", content=ROUTING_100_0).status_code == 200
        s.pipeline = s.import_pipeline(judgments_only("reviews-timeline", apply_ratio=True))  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def browser(server: ConsoleServer) -> Iterator[Browser]:
    with chromium() as b:
        yield Browser(b, server)


@pytest.fixture(scope="module")
def execution(server: ConsoleServer) -> str:
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    return execution_id


def test_the_timeline_shows_the_judgment_and_the_weight_change_after_judging_30(
        server: ConsoleServer, browser: Browser, execution: str) -> None:
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution}")
    page.wait_for_function("window.graylaneLive && window.graylaneLive.readyState === 1")
    timeline = page.locator("#timeline")
    judgments = timeline.locator("[data-lane='Judgments']")
    expect(judgments).to_contain_text("none yet")

    header = page.locator("#release")
    header.get_by_label("灰度比例 (%)").fill("30")
    header.get_by_role("button", name="Continue").click()
    expect(header.get_by_role("status").filter(has_text="Continued")).to_be_visible()

    # Live: the judgment, the VirtualService revision the next stage wrote, and the weights it set.
    judged = judgments.get_by_role("link", name=f"alice judged {RATIO}: continue (canary_ratio=30)")
    expect(judged).to_be_visible()
    weights = timeline.locator("[data-lane='Weights']")
    weight = weights.get_by_role("link", name=re.compile(r"^reviews weights v1 70% · v2 30% \(VirtualService reviews "))
    expect(weight).to_be_visible()
    expect(weight).to_contain_text("v2 30%")
    expect(timeline.locator("[data-lane='Revisions']").get_by_role("link", name=re.compile(
        r"^VirtualService default\/reviews revision \d+ \w+ by stage 灰度比例生效$"))).to_be_visible()
    # Judgment before weight change, on the same axis.
    x_judged, x_weight = (float(re.search(r"left:\s*([\d.]+)%", el.get_attribute("style") or "")[1])
                          for el in (judged, weight))
    assert x_judged <= x_weight
    # Each version's error rate over the window, from the scraped series: the canary fails about a quarter
    # (whole requests in a bucket of a few seconds: 5-49%), the baseline never. Judged within a second or two of
    # the start, the first bucket may still be that short, holding 3 or 4 canary requests and no failure yet (the
    # stand-in fails one a second): the fragment refreshes every 15 s, and by then the first bucket is whole.
    canary = timeline.locator("[data-lane='Error rate'] a.canary").first
    failing = re.compile(r"^reviews v2 \(canary\): 5xx ([5-9]|[1-4]\d)(\.\d+)?% ")
    expect(canary).to_have_attribute("aria-label", failing, timeout=25_000)
    expect(timeline.locator("[data-lane='Error rate'] a.baseline").first).to_have_attribute(
        "aria-label", re.compile(r"^reviews v1 \(baseline\): 5xx 0% "))

    # The table says the same in words, in time order.
    page.get_by_text("The timeline as a table").click()
    table = page.locator("#timeline-table")
    expect(table).to_contain_text("reviews weights v1 70% · v2 30%")
    rows = table.locator("tbody tr").all_inner_texts()
    first_judgment = next(i for i, r in enumerate(rows) if "alice judged" in r)
    start = next(i for i, r in enumerate(rows) if "reviews weights before this execution: v1 100% · v2 0%" in r)
    change = next(i for i, r in enumerate(rows) if "reviews weights v1 70% · v2 30%" in r)
    assert start < first_judgment < change, rows
    page.screenshot(path=str(ARTIFACTS / "timeline-after-judging-30.png"), full_page=True)
    assert serious_violations(page) == []

    # A weight point leads to its revision; an error-rate point to a trace of that version.
    href = weight.get_attribute("href") or ""
    assert re.fullmatch(r"/resources/VirtualService/default/reviews\?diff=\d+", href), href
    weight.click()
    expect(page.locator("pre.diff .add").filter(has_text="weight: 30")).to_be_visible()
    page.go_back()
    canary = page.locator("#timeline [data-lane='Error rate'] a.canary").last
    canary.click()
    expect(page).to_have_url(re.compile(r"/traces"))
    expect(page.locator("tr[data-service='reviews.default']").first).to_have_attribute("data-version", "v2")


def test_the_timeline_on_its_own_page_reads_at_390px_and_has_no_serious_violations(
        server: ConsoleServer, browser: Browser) -> None:
    execution = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution, RATIO, "RUNNING")
    server.judge(execution, RATIO, customParams={"canary_ratio": "40"})
    page = browser.new_page(width=390, height=844)
    page.goto(f"{server.base}/executions/{execution}")
    page.get_by_role("link", name="open on its own page").click()
    expect(page.get_by_role("heading", name=re.compile("^Timeline: "))).to_be_visible()
    weights = page.locator("[data-lane='Weights']")
    weight = weights.get_by_role("link", name=re.compile(r"^reviews weights v1 60% · v2 40%"))
    expect(weight).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    track = page.locator("[data-lane='Weights'] .tl-track").bounding_box()
    assert track and track["width"] >= 300, track  # the lane name sits above the track on a phone
    page.screenshot(path=str(ARTIFACTS / "timeline-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_text("The timeline as a table").click()
    assert serious_violations(page) == []


def test_the_evidence_links_sample_traces_of_each_version(server: ConsoleServer, browser: Browser) -> None:
    execution = server.start_pipeline(server.import_pipeline(judgments_only("reviews-evidence")))
    server.wait_stage(execution, RATIO, "RUNNING")
    server.judge(execution, RATIO, customParams={"canary_ratio": "30"})
    server.wait_stage(execution, RELEASE, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution}")
    header = page.locator("#release")
    expect(header.get_by_role("heading", name=f"Waiting for you: {RELEASE}")).to_be_visible()
    for version in ("v1", "v2"):
        row = header.get_by_role("row", name=re.compile(rf"^{version} "))
        expect(row.get_by_role("link", name=re.compile(rf"^Trace \w+ of reviews {version}"))).not_to_have_count(0)
    header.screenshot(path=str(ARTIFACTS / "judgment-evidence-traces.png"))
    row = header.get_by_role("row", name=re.compile(r"^v2 "))
    sample = row.get_by_role("link", name=re.compile(r"^Trace \w+ of reviews v2")).first
    short = sample.inner_text().split()[0]
    sample.click()
    expect(page.get_by_role("heading", name=re.compile(rf"^Trace {short}"))).to_be_visible()
    reviews = page.locator("tr[data-service='reviews.default']")
    expect(reviews).to_have_count(1)
    expect(reviews).to_have_attribute("data-version", "v2")
    assert serious_violations(page) == []

    page.go_back()
    page.locator("#release").get_by_role("link", name="All recent traces of reviews v1").click()
    expect(page.get_by_role("heading", name="Traces of reviews v1")).to_be_visible()
    page.locator("table.list tbody a").first.click()
    expect(page.locator("tr[data-service='reviews.default']")).to_have_attribute("data-version", "v1")


def reviews_traffic(server: ConsoleServer) -> Observed:
    """What the release header's view model makes of the last minute's graph for reviews (graylane.ui.release)."""
    return version_traffic("reviews", server.api.get("/api/v1/graph", params={"window": "1m"}).json())


def evidence_cell(table: Any, version: str, column: str) -> Any:
    """The cell of `version`'s row under the column headed `column`, as a reader finds it."""
    headers = [h.strip() for h in table.locator("thead th").all_text_contents()]
    return table.get_by_role("row", name=re.compile(rf"^{version} ")).locator("th, td").nth(headers.index(column))


def test_the_evidence_beside_the_judgment_gives_each_versions_error_rate_and_p95(
        server: ConsoleServer, browser: Browser) -> None:
    """The stand-in's canary (v2) fails a quarter of its requests in 12 ms, the baseline (v1) none in 4 ms: the
    release header shows both, next to the form that decides, as the view model computes them from the graph."""
    execution = server.start_pipeline(server.import_pipeline(judgments_only("reviews-evidence-numbers")))
    server.wait_stage(execution, RATIO, "RUNNING")
    server.judge(execution, RATIO, customParams={"canary_ratio": "30"})
    server.wait_stage(execution, RELEASE, "RUNNING")
    deadline = time.monotonic() + 30  # a freshly started control plane has scraped no failure of v2 yet
    while not reviews_traffic(server).error_rate.get("v2"):
        assert time.monotonic() < deadline, f"no 5xx of reviews v2 in the last minute: {reviews_traffic(server)}"
        time.sleep(0.2)
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution}")
    header = page.locator("#release")
    expect(header.get_by_role("heading", name=f"Waiting for you: {RELEASE}")).to_be_visible()
    expect(header.locator("form.judgment").get_by_role("button", name=FULL, exact=True)).to_be_visible()
    table = header.get_by_role("table", name=re.compile("^reviews"))
    expect(table.get_by_role("columnheader", name="5xx")).to_be_visible()
    expect(table.get_by_role("columnheader", name="p95")).to_be_visible()
    seen = reviews_traffic(server)
    assert seen.p95_ms["v2"] > seen.p95_ms["v1"] > 0, seen  # 12 ms and 4 ms requests, read through histograms
    expect(evidence_cell(table, "v1", "5xx")).to_have_text("0%")
    expect(evidence_cell(table, "v1", "p95")).to_have_text(f"{seen.p95_ms['v1']:g} ms")
    expect(evidence_cell(table, "v2", "p95")).to_have_text(f"{seen.p95_ms['v2']:g} ms")
    canary = evidence_cell(table, "v2", "5xx")
    expect(canary).to_have_text(re.compile(r"^([5-9]|[1-4]\d)(\.\d+)?%$"))  # about a quarter
    shown = float(canary.inner_text().rstrip("%"))
    assert abs(shown - seen.error_rate["v2"]) < 5, (shown, seen)  # the same window, read a moment apart
    header.screenshot(path=str(ARTIFACTS / "judgment-evidence.png"))


FRAMES = "() => new Promise((done) => { let n = 0; const step = () => (++n < 20 ? requestAnimationFrame(step) : done(n)); requestAnimationFrame(step); })"  # noqa: E501


def reviews_edge(page: object, version: str) -> str:
    return str(page.evaluate(  # type: ignore[attr-defined]
        """(v) => window.graylaneCy.edges().filter(e => e.data('service') === 'reviews'
             && window.graylaneCy.getElementById(e.data('target')).data('version') === v)[0].id()""", version))


def test_the_topology_animates_traffic_with_its_option_in_the_url(server: ConsoleServer, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{server.base}/topology")
    expect(page.locator("#g-animate")).to_be_checked()
    page.wait_for_function("window.graylaneCy && window.graylaneCy.edges().some(e => e.data('rps') > 0)")
    dots = page.locator("#g-traffic circle.traffic-dot")
    expect(dots.first).to_be_attached()
    expect(page.locator("#g-traffic circle.traffic-dot.error").first).to_be_attached()  # v2 fails a quarter
    # Dots per second follow each edge's request rate: reviews-v1 gets twice v2's requests.
    v1, v2 = reviews_edge(page, "v1"), reviews_edge(page, "v2")
    rates = page.evaluate("window.graylaneTraffic.rates")
    assert rates[v2] > 0 and 1.6 <= rates[v1] / rates[v2] <= 2.4, rates
    page.screenshot(path=str(ARTIFACTS / "topology-traffic-animation.png"))

    page.get_by_label("traffic animation").uncheck()
    expect(page).to_have_url(re.compile(r"animate=false"))
    expect(dots).to_have_count(0)
    page.reload()
    expect(page.locator("#g-animate")).not_to_be_checked()
    page.wait_for_function("window.graylaneCy && window.graylaneCy.edges().some(e => e.data('rps') > 0)")
    page.evaluate(FRAMES)
    expect(dots).to_have_count(0)
    page.get_by_label("traffic animation").check()
    expect(page).to_have_url(re.compile(r"animate=true"))
    expect(dots.first).to_be_attached()


def test_reduced_motion_turns_the_animation_off_unless_the_url_asks(server: ConsoleServer, browser: Browser) -> None:
    page = browser.new_page()
    page.emulate_media(reduced_motion="reduce")
    page.goto(f"{server.base}/topology")
    expect(page.locator("#g-animate")).not_to_be_checked()
    page.wait_for_function("window.graylaneCy && window.graylaneCy.edges().some(e => e.data('rps') > 0)")
    page.evaluate(FRAMES)
    expect(page.locator("#g-traffic circle.traffic-dot")).to_have_count(0)
    page.goto(f"{server.base}/topology?animate=true")  # a shared link that asks for it
    expect(page.locator("#g-animate")).to_be_checked()
    expect(page.locator("#g-traffic circle.traffic-dot").first).to_be_attached()


def test_the_release_tables_refresh_on_their_own_beside_a_waiting_judgment(server: ConsoleServer,
                                                                          browser: Browser) -> None:
    """While the execution runs, the shares, 5xx and p95 tables poll their own fragment every 15 s (a long wait at a
    judgment keeps showing the last minute); the judgment form beside them is not part of what is swapped."""
    execution = server.start_pipeline(server.import_pipeline(judgments_only("reviews-refresh")))
    server.wait_stage(execution, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution}")
    shares = page.locator("#release-shares")
    expect(shares).to_have_attribute("hx-trigger", "every 15s")
    expect(shares).to_have_attribute("hx-get", f"/ui/executions/{execution}/release/shares")
    assert page.locator("#release-shares form").count() == 0  # the judgment form stays outside the swap
    fragment = page.request.get(f"{server.base}/ui/executions/{execution}/release/shares")
    assert fragment.status == 200
    html = fragment.text()
    assert 'id="release-shares"' in html and "<caption>reviews" in html and ">5xx<" in html, html[:500]
    assert server.api.post(f"/api/v1/executions/{execution}/cancel", json={}).status_code == 200
    page.goto(f"{server.base}/executions/{execution}")
    expect(page.locator("#release-shares")).not_to_have_attribute("hx-trigger", "every 15s")  # finished: no polling
