"""The console in Chromium against a real control plane: pages update live (SSE), times are formatted
after live updates too, the navigation counts judgments waiting, the judgment form says what is wrong,
focus follows the result, irreversible choices ask first, Cancel says what stays deployed, Pause/Resume/Cancel
show only where they apply, a normal wait reads as a note and a failure as an error, and a 390 px phone gets a
usable page.

One `graylane server` per module (tests/ui/console_server.py); waits are Playwright's, not sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

from playwright.sync_api import expect  # noqa: E402
from tests.ui.canary_pipeline import DELETE, END, FULL, RATIO, RELEASE, judgments_only, reviews_routing  # noqa: E402
from tests.ui.console_server import ARTIFACTS, Browser, ConsoleServer, chromium, running_server  # noqa: E402

EPOCH_MS = re.compile(r"\b1[5-9]\d{11}\b")  # what a raw JavaScript timestamp looks like today
VS_80_30 = """apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews-dry-run}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v3}
      weight: 30
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    state = tmp_path_factory.mktemp("live") / "state"
    state.mkdir()
    with running_server(state) as s:
        s.pipeline = s.import_pipeline(judgments_only())  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def browser(server: ConsoleServer) -> Iterator[Browser]:
    with chromium() as b:
        yield Browser(b, server)


@pytest.fixture(scope="module")
def waiting(server: ConsoleServer, browser: Browser) -> Iterator[tuple[str, Any, Any]]:
    """Overview and Executions open *before* the execution starts; yields (execution id, both pages)."""
    overview, executions = browser.new_page(), browser.new_page()
    overview.goto(f"{server.base}/")
    executions.goto(f"{server.base}/executions")
    for page in (overview, executions):  # subscribed before anything happens
        page.wait_for_function("window.graylaneLive && window.graylaneLive.readyState === 1")
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    yield execution_id, overview, executions
    overview.context.close()
    executions.context.close()


def no_raw_times(page: Any) -> None:
    text = page.locator("main").inner_text()
    assert not EPOCH_MS.search(text), f"raw epoch milliseconds on {page.url}: {EPOCH_MS.search(text)}"


def test_overview_executions_and_the_badge_update_live(server: ConsoleServer, waiting: Any) -> None:
    execution_id, overview, executions = waiting
    live = overview.locator("#overview-live")
    expect(live.get_by_role("link", name=RATIO)).to_be_visible()
    expect(overview.locator("#nav-waiting .badge-count")).to_have_text("1")
    expect(overview.get_by_role("link", name=re.compile(r"^Overview\s*1 judgment waiting for you$"))).to_be_visible()
    expect(executions.get_by_text("No executions yet.")).to_have_count(0)
    row = executions.locator(f"tr[data-execution='{execution_id}']")
    expect(row).to_contain_text("waiting for judgment")
    expect(row).to_contain_text("RUNNING")
    no_raw_times(overview)
    no_raw_times(executions)

    server.judge(execution_id, RATIO, customParams={"canary_ratio": "30"})  # judged elsewhere (the CLI)
    expect(live.get_by_role("link", name=RELEASE)).to_be_visible()
    expect(live.get_by_role("link", name=RATIO)).to_have_count(0)  # a finished judgment leaves the list
    expect(executions.locator("#nav-waiting .badge-count")).to_have_text("1")
    no_raw_times(overview)


def test_the_judgment_form_says_what_is_wrong_and_focus_follows_the_result(
        server: ConsoleServer, browser: Browser) -> None:
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    ratio = page.get_by_label("灰度比例 (%)")
    for typed, said in [("abc", '"abc" is not a number'), ("12.5", "is not a whole number"),
                        ("150", "above the maximum 100"), ("-5", "below the minimum 0"),
                        ("", "a value is required")]:
        ratio.fill(typed)
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("alert")).to_contain_text(said)
        expect(ratio).to_be_focused()
    assert server.stage(execution_id, RATIO)["status"] == "RUNNING"  # nothing was sent

    instructions = page.locator(".instructions").first
    expect(instructions.locator("code").first).to_have_text("v2")  # ${parameters.canary_version}, as Markdown
    ratio.fill("30")
    page.get_by_role("button", name="Continue").click()
    result = page.get_by_role("status").filter(has_text="Continued")
    expect(result).to_be_visible()
    expect(page.locator("[data-result]:focus, [data-result] :focus")).to_have_count(1)
    # console.js sent the judgment with an Idempotency-Key of its own (a UUID), recorded with it
    key = server.stage(execution_id, RATIO)["context"]["judgmentRecord"]["idempotencyKey"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", key), key
    # The panel refreshes live; the judged line carries a formatted time, not epoch milliseconds.
    expect(page.locator(f"#stage-{server.stage(execution_id, RATIO)['id']}")).to_contain_text("Judged continue")
    expect(page.locator("#stage-table-box")).to_contain_text(RELEASE)
    no_raw_times(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "judgment-form.png"), full_page=True)


def test_a_live_refresh_keeps_what_the_approver_is_typing(server: ConsoleServer, browser: Browser) -> None:
    """Another stage changing state re-renders the panel around the form: the typed ratio and the focus stay,
    and what is sent is what was typed (never the field's default from the new render)."""
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    ratio = page.get_by_label("灰度比例 (%)")
    ratio.fill("42")
    expect(ratio).to_be_focused()
    with page.expect_response(re.compile(r"/ui/executions/[^/]+/panel$")):  # what a stage's change triggers
        page.evaluate("document.body.dispatchEvent(new Event('graylane:refresh'))")
    page.wait_for_load_state("networkidle")
    expect(ratio).to_have_value("42")
    expect(ratio).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Continued")).to_be_visible()
    assert server.stage(execution_id, RATIO)["context"]["customParams"]["canary_ratio"] == "42"


def test_the_irreversible_choice_asks_first_and_lists_what_it_does(server: ConsoleServer, browser: Browser) -> None:
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    server.judge(execution_id, RATIO, customParams={"canary_ratio": "30"})
    server.wait_stage(execution_id, RELEASE, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    full = page.get_by_role("button", name=FULL, exact=True)
    expect(full).to_have_class(re.compile("irreversible"))
    expect(page.get_by_role("button", name=END, exact=True)).not_to_have_class(re.compile("irreversible"))
    expect(page.locator(".consequence")).to_contain_text("delete deployment reviews-v1")
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    with page.expect_event("dialog"):  # handled (dismissed) before the assertions below read `asked`
        full.click()
    expect(page.locator(".consequence")).to_be_visible()
    assert asked and "delete deployment reviews-v1" in asked[0] and "100% to reviews v2" in asked[0], asked
    assert server.stage(execution_id, RELEASE)["status"] == "RUNNING"  # dismissed: nothing sent

    page.once("dialog", lambda dialog: dialog.accept())
    full.click()
    expect(page.get_by_role("status").filter(has_text="Continued")).to_be_visible()
    judged = server.stage(execution_id, RELEASE)
    assert judged["context"]["judgmentInput"] == FULL
    assert DELETE in {s["name"] for s in server.execution(execution_id)["stages"]}


def test_the_dry_run_shows_the_analyzers_findings_with_the_diff(server: ConsoleServer, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{server.base}/resources")
    page.get_by_label("Manifests (multi-document YAML)").fill(VS_80_30)
    page.get_by_role("button", name="Dry run (diff)").click()
    findings = page.get_by_role("table", name="Findings")
    expect(findings).to_contain_text("reviews+v3")  # a subset no DestinationRule defines
    expect(findings).to_contain_text("IST0101")
    expect(findings).to_contain_text("route weights sum to 110")
    expect(page.locator("pre.diff .add").first).to_be_visible()
    expect(page.locator("#apply-outcome")).to_be_focused()
    assert server.api.get("/api/v1/resources/VirtualService/reviews-dry-run").status_code == 404
    page.screenshot(path=str(ARTIFACTS / "dry-run-findings.png"), full_page=True)


def test_skip_link_and_keyboard_reachable_graphs(server: ConsoleServer, browser: Browser) -> None:
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    graph = page.locator("#stages")
    graph.focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#stages-selected")).to_contain_text(f"stage {RATIO}")
    page.keyboard.press("Enter")
    expect(page.locator(f"#stage-{server.stage(execution_id, RATIO)['id']} h2")).to_be_focused()
    page.get_by_text("The stage graph as a table").click()
    expect(page.locator("#stage-table")).to_contain_text(RELEASE)

    page.goto(f"{server.base}/topology")
    expect(page.locator("#cy")).to_have_attribute("tabindex", "0")
    page.get_by_text("Nodes and edges as a table").click()
    expect(page.get_by_role("table", name="Nodes")).to_be_visible()


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{page.url} is {width}px wide at a 390px viewport"


def test_a_390px_phone_keeps_graphs_visible_and_nothing_scrolls_sideways(
        server: ConsoleServer, browser: Browser) -> None:
    for i in range(3):  # history with long actors and diffs
        cm = (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: flags}}\n"
              f"data: {{note: '{'a very long configuration value ' * 6}{i}'}}\n")
        assert server.api.post("/api/v1/apply", content=cm,
                               headers={"X-Graylane-User": f"pipeline-runner-with-a-long-name-{i}"}).status_code == 200
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page(width=390, height=844)
    for path in ("/", "/topology", "/pipelines", "/executions", f"/executions/{execution_id}", "/resources",
                 "/resources/ConfigMap/default/flags?diff=2", "/traces"):
        page.goto(server.base + path)
        no_sideways_scroll(page)
    page.goto(f"{server.base}/topology")
    box = page.locator("#cy").bounding_box()
    assert box and box["height"] >= 300 and box["width"] >= 300, box
    page.screenshot(path=str(ARTIFACTS / "topology-390.png"), full_page=True)

    page.goto(f"{server.base}/executions/{execution_id}")
    page.wait_for_function("window.graylaneStages !== undefined")
    assert page.evaluate("window.graylaneStages.zoom()") >= 0.75  # labels stay readable
    stages = page.locator("#stages").bounding_box()
    assert stages and stages["width"] <= 390
    page.screenshot(path=str(ARTIFACTS / "execution-390.png"), full_page=True)

    page.goto(f"{server.base}/resources/ConfigMap/default/flags?diff=2")
    table = page.locator("table.history").bounding_box()
    assert table and table["x"] + table["width"] <= 390, table
    page.screenshot(path=str(ARTIFACTS / "resource-history-390.png"), full_page=True)


ROUTING_70_30 = reviews_routing(70)


def test_the_release_header_shows_weights_the_step_and_the_judgment_waiting(
        server: ConsoleServer, browser: Browser) -> None:
    assert server.api.post("/api/v1/apply", content=ROUTING_70_30).status_code == 200
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    header = page.locator("#release")
    expect(header.get_by_role("heading", name=f"Waiting for you: {RATIO}")).to_be_visible()
    shares = header.get_by_role("table", name=re.compile("^reviews"))
    expect(shares.get_by_role("row", name=re.compile(r"^v1 .*70%"))).to_be_visible()
    expect(shares.get_by_role("row", name=re.compile(r"^v2 .*30%"))).to_be_visible()
    expect(header).to_contain_text(f"Current step: {RATIO}")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    expect(page.get_by_role("button", name="Resume")).to_be_hidden()
    header.screenshot(path=str(ARTIFACTS / "release-header-30.png"))

    header.get_by_label("灰度比例 (%)").fill("30")  # the form is right there, not in the third panel
    header.get_by_role("button", name="Continue").click()
    expect(header.get_by_role("status").filter(has_text="Continued")).to_be_visible()
    expect(header.get_by_role("heading", name=f"Waiting for you: {RELEASE}")).to_be_visible()
    assert server.stage(execution_id, RATIO)["context"]["customParams"]["canary_ratio"] == "30"


def test_history_offers_restore_and_edit_then_dry_run(server: ConsoleServer, browser: Browser) -> None:
    for value in ("first", "second", "third"):
        cm = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: history}}\ndata: {{value: {value}}}\n"
        assert server.api.post("/api/v1/apply", content=cm).status_code == 200
    revisions = [h["revision"] for h in server.api.get("/api/v1/resources/ConfigMap/history/history").json()["items"]]
    page = browser.new_page()
    page.goto(f"{server.base}/resources/ConfigMap/default/history")
    page.get_by_role("link", name=f"Edit, then dry-run revision {revisions[0]}").click()
    manifest = page.get_by_label("Manifests (multi-document YAML)")
    expect(manifest).to_have_value(re.compile("value: first"))
    assert "resourceVersion" not in manifest.input_value()
    page.get_by_role("button", name="Dry run (diff)").click()
    expect(page.locator("pre.diff .del").filter(has_text="third")).to_be_visible()
    assert server.api.get("/api/v1/resources/ConfigMap/history").json()["data"] == {"value": "third"}

    page.go_back()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Restore revision {revisions[0]}").click()
    expect(page.get_by_role("status").filter(has_text=f"Restored revision {revisions[0]}")).to_be_visible()
    assert server.api.get("/api/v1/resources/ConfigMap/history").json()["data"] == {"value": "first"}


def test_cancel_and_return_traffic_puts_the_virtual_service_back(server: ConsoleServer, browser: Browser) -> None:
    assert server.api.post("/api/v1/apply", content=ROUTING_70_30).status_code == 200
    pipeline = server.import_pipeline(judgments_only("reviews-ratio", apply_ratio=True))
    execution_id = server.start_pipeline(pipeline)
    server.wait_stage(execution_id, RATIO, "RUNNING")
    server.judge(execution_id, RATIO, customParams={"canary_ratio": "20"})
    page = browser.new_page()

    def weights() -> list[int]:
        vs = server.api.get("/api/v1/resources/VirtualService/reviews").json()
        return [r["weight"] for r in vs["spec"]["http"][0]["route"]]

    page.goto(f"{server.base}/executions/{execution_id}")
    expect(page.locator("#release").get_by_role("row", name=re.compile(r"^v2 .*20%"))).to_be_visible()
    assert weights() == [80, 20]
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Cancel and return traffic to the baseline").click()
    expect(page.get_by_role("status").filter(has_text="Cancel requested")).to_contain_text(
        "VirtualService default/reviews: back to revision")
    assert "reviews traffic back as it was" in asked[0] and "VirtualService reviews" in asked[0], asked
    assert weights() == [70, 30]
    expect(page.locator("#exe-status")).to_have_text("CANCELED")


def test_resource_pages_update_live(server: ConsoleServer, browser: Browser) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: live-flags}\ndata: {canary: 'VALUE'}\n"
    assert server.api.post("/api/v1/apply", content=cm.replace("VALUE", "on")).status_code == 200
    listing, detail = browser.new_page(), browser.new_page()
    listing.goto(f"{server.base}/resources?kind=ConfigMap")
    detail.goto(f"{server.base}/resources/ConfigMap/default/live-flags")
    for page in (listing, detail):
        page.wait_for_function("window.graylaneLive && window.graylaneLive.readyState === 1")
    expect(detail.locator("table.history tbody tr")).to_have_count(1)

    assert server.api.post("/api/v1/apply", content=cm.replace("VALUE", "off")).status_code == 200
    assert server.api.post("/api/v1/apply", content=cm.replace("live-flags", "live-more").replace("VALUE", "x")
                           ).status_code == 200
    expect(listing.get_by_role("link", name="live-more")).to_be_visible()
    expect(detail.locator("table.history tbody tr")).to_have_count(2)
    expect(detail.locator("pre.code").first).to_contain_text("canary: 'off'")
    no_raw_times(detail)


def test_the_topology_options_live_in_the_url(server: ConsoleServer, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{server.base}/topology?labels=distribution&type=workload&idle=false")
    expect(page.locator("#g-labels")).to_have_value("distribution")
    expect(page.locator("#g-type")).to_have_value("workload")
    expect(page.locator("#g-idle")).not_to_be_checked()
    page.select_option("#g-window", "5m")
    expect(page).to_have_url(re.compile(r"window=5m.*labels=distribution|labels=distribution.*window=5m"))
    page.reload()
    expect(page.locator("#g-window")).to_have_value("5m")


def test_the_ratio_previews_the_split_and_the_change_before_it_is_sent(
        server: ConsoleServer, browser: Browser) -> None:
    assert server.api.post("/api/v1/apply", content=ROUTING_70_30).status_code == 200
    pipeline = server.import_pipeline(judgments_only("reviews-preview", apply_ratio=True))
    execution_id = server.start_pipeline(pipeline)
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    header = page.locator("#release")
    header.get_by_label("灰度比例 (%)").fill("40")
    preview = header.locator(".preview")
    expect(preview).to_contain_text("of 100 requests: reviews v1 60 · reviews v2 40")
    preview.get_by_text("VirtualService reviews: the change").click()
    expect(preview.locator("pre.diff .add")).to_contain_text(["weight: 60", "weight: 40"])
    assert server.stage(execution_id, RATIO)["status"] == "RUNNING"  # a preview sends nothing
    header.screenshot(path=str(ARTIFACTS / "judgment-ratio-preview.png"))


def actions(page: Any) -> dict[str, bool]:
    """Which of the execution's actions the page offers (visible), by their buttons' names."""
    names = {"Pause": "Pause", "Resume": "Resume", "Cancel": "Cancel",
             "Cancel and return": "Cancel and return traffic to the baseline"}
    return {key: page.get_by_role("button", name=name, exact=True).is_visible() for key, name in names.items()}


def test_cancel_says_what_stays_deployed_and_asks_first(server: ConsoleServer, browser: Browser) -> None:
    """Opened as the release starts (as the start form leaves you), the page's Cancel later names what the
    execution has deployed since: the question follows the execution, not the moment the page was loaded."""
    assert server.api.post("/api/v1/apply", content=ROUTING_70_30).status_code == 200
    pipeline = server.import_pipeline(judgments_only("reviews-cancel", apply_ratio=True))
    execution_id = server.start_pipeline(pipeline)
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    cancel = page.get_by_role("button", name="Cancel", exact=True)
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    with page.expect_event("dialog"):  # handled (dismissed) before `asked` is read
        cancel.click()
    expect(page.locator("#exe-status")).to_have_text("RUNNING")
    assert asked == ["Cancel this execution? What it deployed stays deployed."], asked  # nothing yet

    header = page.locator("#release")
    header.get_by_label("灰度比例 (%)").fill("20")
    header.get_by_role("button", name="Continue").click()
    expect(header.get_by_role("status").filter(has_text="Continued")).to_be_visible()
    # 灰度比例生效 applies reviews at 80/20 (then waits for workloads this test has none of): its manifest is out.
    expect(page.locator("form[data-confirm-of='cancel']")).to_have_attribute(
        "hx-confirm", re.compile("VirtualService reviews"))  # the page has heard of it (SSE or its 3 s poll)
    page.once("dialog", dismiss)
    with page.expect_event("dialog"):
        cancel.click()
    expect(page.locator("#action-result")).to_be_empty()  # dismissed: nothing sent, nothing said
    assert asked[1:] == ["Cancel this execution? What it deployed stays deployed: VirtualService reviews."], asked
    expect(page.locator("#exe-status")).to_have_text("RUNNING")
    assert server.execution(execution_id)["status"] == "RUNNING"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_label("reason").fill("the canary's latency")
    cancel.click()
    expect(page.get_by_role("status").filter(has_text="Cancel requested.")).to_be_visible()
    expect(page.locator("#exe-status")).to_have_text("CANCELED")
    exe = server.execution(execution_id)
    assert exe["status"] == "CANCELED" and exe["cancellationReason"] == "the canary's latency", exe
    vs = server.api.get("/api/v1/resources/VirtualService/reviews").json()  # what it said stays, stayed
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [80, 20]
    # Finished: nothing left to pause, resume or cancel, live and on a fresh load.
    expect(cancel).to_be_hidden()
    assert actions(page) == {"Pause": False, "Resume": False, "Cancel": False, "Cancel and return": False}
    page.reload()
    expect(page.locator("#exe-status")).to_have_text("CANCELED")
    assert actions(page) == {"Pause": False, "Resume": False, "Cancel": False, "Cancel and return": False}


def test_pause_resume_and_cancel_are_offered_only_where_they_apply(server: ConsoleServer, browser: Browser) -> None:
    execution_id = server.start_pipeline(server.pipeline)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    expect(page.locator("#exe-status")).to_have_text("RUNNING")
    assert actions(page) == {"Pause": True, "Resume": False, "Cancel": True, "Cancel and return": True}

    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.locator("#exe-status")).to_have_text("PAUSED")
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Pause", exact=True)).to_be_hidden()
    assert actions(page) == {"Pause": False, "Resume": True, "Cancel": True, "Cancel and return": True}
    page.reload()  # the server renders the same choice
    expect(page.locator("#exe-status")).to_have_text("PAUSED")
    assert actions(page) == {"Pause": False, "Resume": True, "Cancel": True, "Cancel and return": True}

    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator("#exe-status")).to_have_text("RUNNING")
    expect(page.get_by_role("button", name="Pause", exact=True)).to_be_visible()
    assert actions(page) == {"Pause": True, "Resume": False, "Cancel": True, "Cancel and return": True}

    server.judge(execution_id, RATIO, customParams={"canary_ratio": "30"})  # then end the release: it succeeds
    server.wait_stage(execution_id, RELEASE, "RUNNING")
    server.judge(execution_id, RELEASE, judgmentInput=END)
    expect(page.locator("#exe-status")).to_have_text("SUCCEEDED")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
    assert actions(page) == {"Pause": False, "Resume": False, "Cancel": False, "Cancel and return": False}
    page.reload()
    expect(page.locator("#exe-status")).to_have_text("SUCCEEDED")
    assert actions(page) == {"Pause": False, "Resume": False, "Cancel": False, "Cancel and return": False}


WAITS = {"application": "bookinfo", "name": "waits-and-a-failure", "limitConcurrent": False, "stages": [
    {"refId": "1", "type": "wait", "name": "hold ten minutes", "waitTime": 600},
    {"refId": "2", "type": "manualJudgment", "name": "sign-off", "instructions": "Look, then continue."},
    {"refId": "3", "type": "wait", "name": "misconfigured wait", "waitTime": "soon", "continuePipeline": True}]}
NOTE, ERROR = "rgb(90, 98, 114)", "rgb(180, 35, 24)"  # console.css: --muted and --bad


def test_a_normal_wait_reads_as_a_note_and_a_failure_as_an_error(server: ConsoleServer, browser: Browser) -> None:
    execution_id = server.start_pipeline(server.import_pipeline(WAITS))
    server.wait_stage(execution_id, "misconfigured wait", "FAILED_CONTINUE")
    ids = {s["name"]: s["id"] for s in server.execution(execution_id)["stages"]}
    for name in ("hold ten minutes", "sign-off"):
        server.wait_stage(execution_id, name, "RUNNING")
    page = browser.new_page()
    page.goto(f"{server.base}/executions/{execution_id}")
    for name, task in (("hold ten minutes", "wait"), ("sign-off", "waitForJudgment")):
        stage = page.locator(f"#stage-{ids[name]}")
        message = stage.get_by_text(f"task {task}: RUNNING", exact=True)
        expect(message).to_be_visible()
        expect(message).to_have_class("note")
        expect(message).to_have_css("color", NOTE)
        expect(stage.locator(".error")).to_have_count(0)
    failed = page.locator(f"#stage-{ids['misconfigured wait']}")
    expect(failed.locator(".note")).to_have_count(0)
    reason = failed.get_by_text("exception: stage misconfigured wait: waitTime 'soon' is not a number of seconds",
                                exact=True)  # the error's text, not its JSON
    expect(reason).to_be_visible()
    expect(reason).to_have_class("error")
    expect(reason).to_have_css("color", ERROR)
    expect(failed.get_by_role("button", name="Restart stage")).to_be_visible()
