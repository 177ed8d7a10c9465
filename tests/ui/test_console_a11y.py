"""axe-core (npm, node_modules/axe-core) over every console page in Chromium: no serious or critical
violations, signed out (the sign-in page) and signed in, with a judgment waiting and a dry-run result shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

from playwright.sync_api import expect  # noqa: E402
from tests.ui.canary_pipeline import RATIO, judgments_only  # noqa: E402
from tests.ui.console_server import Browser, ConsoleServer, chromium, running_server  # noqa: E402

from graylane.ui.vendor import node_modules  # noqa: E402

# The console's own node_modules lookup: $GRAYLANE_NODE_MODULES (a worktree sharing another checkout's), else the
# checkout's node_modules/.
AXE = (node_modules() or Path(__file__).resolve().parents[2] / "node_modules") / "axe-core" / "axe.min.js"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags}\ndata: {canary: 'on'}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci` (axe-core is a devDependency in package.json)", pytrace=False)
    state = tmp_path_factory.mktemp("a11y") / "state"
    state.mkdir()
    with running_server(state) as s:
        for value in ("on", "off"):
            assert s.api.post("/api/v1/apply", content=CM.replace("'on'", f"'{value}'")).status_code == 200
        pipeline = s.import_pipeline(judgments_only())
        s.execution_id = s.start_pipeline(pipeline)  # type: ignore[attr-defined]
        s.pipeline_id = pipeline  # type: ignore[attr-defined]
        s.wait_stage(s.execution_id, RATIO, "RUNNING")  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def page(server: ConsoleServer) -> Iterator[Any]:
    with chromium() as b:
        page = Browser(b, server).new_page()
        yield page


def serious_violations(page: Any) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    out = []
    for v in result["violations"]:
        if v["impact"] in ("serious", "critical"):
            targets = "; ".join(" ".join(n["target"]) + f" ({n['failureSummary']})" for n in v["nodes"][:4])
            out.append(f"{v['id']} [{v['impact']}]: {v['help']} — {targets}")
    return out


PAGES = [
    pytest.param("/", id="overview"),
    pytest.param("/topology", id="topology"),
    pytest.param("/pipelines", id="pipelines"),
    pytest.param("/pipelines/{pipeline}/start", id="start-form"),
    pytest.param("/executions", id="executions"),
    pytest.param("/executions/{execution}", id="execution-with-judgment"),
    pytest.param("/resources", id="resources"),
    pytest.param("/resources/ConfigMap/default/flags?diff=2", id="resource-history-diff"),
    pytest.param("/traces", id="traces"),
]


@pytest.mark.parametrize("path", PAGES)
def test_no_serious_or_critical_violations(server: ConsoleServer, page: Any, path: str) -> None:
    url = server.base + path.format(pipeline=server.pipeline_id, execution=server.execution_id)  # type: ignore[attr-defined]
    page.goto(url)
    page.wait_for_load_state("networkidle")
    assert serious_violations(page) == []


def test_no_serious_violations_with_results_shown(server: ConsoleServer, page: Any) -> None:
    page.goto(f"{server.base}/resources")
    page.get_by_label("Manifests (multi-document YAML)").fill(CM.replace("flags", "other"))
    page.get_by_role("button", name="Dry run (diff)").click()
    page.locator("#apply-outcome").wait_for()
    assert serious_violations(page) == []
    page.goto(f"{server.base}/executions/{server.execution_id}")  # type: ignore[attr-defined]
    page.get_by_label("灰度比例 (%)").fill("abc")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("alert").wait_for()
    page.get_by_text("The stage graph as a table").click()
    assert serious_violations(page) == []


def test_the_sign_in_page_has_no_serious_violations(server: ConsoleServer, page: Any) -> None:
    signed_out = page.context.browser.new_context().new_page()  # no session cookie
    signed_out.goto(f"{server.base}/login")
    assert serious_violations(signed_out) == []


# The focused element's ring as Chromium paints it: its computed outline, and the colour behind the ring on each side
# (what document.elementsFromPoint finds at the middle of the ring, its contents aside, composited over the canvas),
# so a ring over the dark header is measured against the header, whatever the DOM parent's colour.
FOCUS_RING = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const parse = (c) => {
    const n = (c.match(/[\\d.]+/g) || []).map(Number);
    return [n[0], n[1], n[2], n.length > 3 ? n[3] : 1];
  };
  const cs = getComputedStyle(el);
  const width = parseFloat(cs.outlineWidth) || 0, offset = parseFloat(cs.outlineOffset) || 0;
  const r = el.getBoundingClientRect(), mid = offset + width / 2;
  const points = {top: [r.left + r.width / 2, r.top - mid], bottom: [r.left + r.width / 2, r.bottom + mid],
                  left: [r.left - mid, r.top + r.height / 2], right: [r.right + mid, r.top + r.height / 2]};
  const behind = {};
  for (const [side, [x, y]] of Object.entries(points)) {
    if (x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) continue;
    const layers = [];
    for (const under of document.elementsFromPoint(x, y)) {
      if (under !== el && el.contains(under)) continue;  // an inset ring lies over the element's own colour
      const bg = parse(getComputedStyle(under).backgroundColor);
      if (bg[3] > 0) layers.push(bg);
      if (bg[3] >= 1) break;
    }
    let out = [255, 255, 255];
    for (const [rr, g, b, a] of layers.reverse()) out = [rr, g, b].map((c, i) => c * a + out[i] * (1 - a));
    behind[side] = out;
  }
  const text = (el.getAttribute("aria-label") || el.textContent || el.name || "").trim().slice(0, 40);
  const label = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " " + text;
  return {label, style: cs.outlineStyle, width, color: parse(cs.outlineColor), behind};
}"""


def luminance(rgb: list[float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: list[float], b: list[float]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_ratio_matches_wcag() -> None:
    assert round(contrast([0, 0, 0], [255, 255, 255]), 2) == 21.0
    assert round(contrast([0x27, 0x43, 0xB8], [0x14, 0x1A, 0x2A]), 2) == 2.13  # the blue ring over the header


def ring_problems(ring: dict[str, Any]) -> list[str]:
    """Why a focused element's ring is not a WCAG AA focus indicator: none painted, thinner than 2 px, or under 3:1
    against the colour behind it on some side."""
    name = ring["label"]
    if ring["style"] in ("none", "hidden") or ring["width"] < 2:
        return [f"{name}: no focus ring ({ring['style']} {ring['width']}px)"]
    if ring["color"][3] < 1:
        return [f"{name}: a translucent focus ring {ring['color']}"]
    if not ring["behind"]:
        return [f"{name}: its ring is outside the viewport"]
    return [f"{name}: ring {ring['color'][:3]} over {[round(c) for c in bg]} ({side}) is "
            f"{contrast(ring['color'], bg):.2f}:1" for side, bg in ring["behind"].items()
            if contrast(ring["color"], bg) < 3.0]


def tab_through(page: Any, limit: int = 200) -> list[dict[str, Any]]:
    """Every element the keyboard reaches, in Tab order from the top of the page, with its ring."""
    page.locator("body").focus()
    seen, rings = set(), []
    for _ in range(limit):
        page.keyboard.press("Tab")
        key = page.evaluate("() => { const ids = window.tabWalk = window.tabWalk || new Map();"
                            " const e = document.activeElement; if (!ids.has(e)) ids.set(e, ids.size);"
                            " return ids.get(e); }")
        if key in seen:  # back at the start
            break
        seen.add(key)
        ring = page.evaluate(FOCUS_RING)
        if ring is not None:
            rings.append(ring)
    return rings


FOCUS_PAGES = [pytest.param("/executions/{execution}", id="execution-with-judgment"),
               pytest.param("/resources/ConfigMap/default/flags?diff=2", id="resource-history-diff"),
               pytest.param("/pipelines", id="pipelines")]


@pytest.mark.parametrize("path", FOCUS_PAGES)
def test_every_focus_ring_contrasts_3_to_1_with_what_is_behind_it(server: ConsoleServer, page: Any, path: str) -> None:
    """WCAG 2.2 AA for a focus indicator (1.4.11, 2.4.13): 3:1 against the adjacent colours. Walked with the
    keyboard, so :focus-visible applies as it does for a person tabbing."""
    page.goto(server.base + path.format(execution=server.execution_id))  # type: ignore[attr-defined]
    page.wait_for_load_state("networkidle")
    rings = tab_through(page)
    assert len(rings) >= 10, rings  # the header's links, the page's controls
    assert any(r["label"].startswith("a Skip to content") for r in rings)
    problems = [p for r in rings for p in ring_problems(r)]
    assert problems == [], problems


def test_the_result_a_submit_focuses_has_a_ring_that_contrasts(server: ConsoleServer, page: Any) -> None:
    execution_id = server.start_pipeline(server.pipeline_id)  # type: ignore[attr-defined]
    server.wait_stage(execution_id, RATIO, "RUNNING")
    page.goto(f"{server.base}/executions/{execution_id}")
    page.get_by_label("灰度比例 (%)").fill("30")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Continued")).to_be_visible()
    expect(page.locator("[data-result]:focus, [data-result] :focus")).to_have_count(1)
    ring = page.evaluate(FOCUS_RING)
    assert ring is not None and ring["style"] != "none", ring
    assert ring_problems(ring) == [], ring
