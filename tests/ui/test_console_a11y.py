"""axe-core (npm, node_modules/axe-core) over every console page in Chromium: no serious or critical
violations, signed out (the sign-in page) and signed in, with a judgment waiting and a dry-run result shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

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
