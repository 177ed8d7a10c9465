"""Hostile expressions stay inside their budgets: YAML bombs, huge shared values, time, and the event loop.

Values may share structure (a list holding the same big list a thousand times is cheap to hold and
enormous to print), so printing, concatenating and comparing must stop at the limits instead of walking
everything first. Memory is this process's peak RSS around the call. Issue #19.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.cli import conftest as cli_fixtures
from tests.expressions.conftest import article_execution
from tests.memory import MB, peak_growth

from graylane.expressions import FunctionError, LimitExceeded, evaluate_expression, evaluate_templated
from graylane.settings import read_cli_token

server_env = cli_fixtures.server_env  # a real `graylane server` child, as the CLI tests run it

MEMORY_BOUND = 200 * MB
LOL = "[" + ",".join(["lol"] * 9) + "]"
YAML_BOMB = "a: &a " + LOL + "\n" + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
ROW = "x" * 1000


def huge_execution() -> dict[str, Any]:
    """The article's execution, its trigger carrying values that print to a billion characters."""
    execution = article_execution()
    thousand_rows = [ROW] * 1000                                    # 1 MB of text, one string held 1000 times
    execution["trigger"]["payload"] = {
        "huge": [thousand_rows] * 1000,                             # 1 GB when printed, 8 KB in memory
        "twin": [list(thousand_rows) for _ in range(1000)],         # equal to huge, element by element
    }
    return execution


def refused(make_ctx: Any, expression: str, error: type[Exception] = LimitExceeded, **options: Any) -> str:
    ctx = make_ctx(execution=huge_execution(), **options)

    def evaluate() -> Exception:
        with pytest.raises(error) as caught:
            evaluate_expression(expression, ctx)
        return caught.value

    exc, grew = peak_growth(evaluate)
    assert grew < MEMORY_BOUND, f"{expression} grew the peak RSS by {grew // MB} MB"
    return str(exc)


def test_read_yaml_of_an_alias_bomb_is_refused(make_ctx: Any) -> None:
    assert len(YAML_BOMB) < 600
    message = refused(make_ctx, f"#readYaml('{YAML_BOMB}')", FunctionError)
    assert "not valid YAML: YAML aliases expand to more than" in message


def test_read_all_yaml_of_an_alias_bomb_is_refused(make_ctx: Any) -> None:
    message = refused(make_ctx, f"#readAllYaml('{YAML_BOMB}')", FunctionError)
    assert "aliases expand" in message


@pytest.mark.parametrize(("expression", "message"), [
    pytest.param("trigger.payload.huge.toString()", "grows past 1000000 characters", id="toString"),
    pytest.param("trigger.payload.huge + ''", "grows past 1000000 characters", id="concat-right"),
    pytest.param("'' + trigger.payload.huge", "grows past 1000000 characters", id="concat-left"),
    pytest.param("T(String).valueOf(trigger.payload.huge)", "grows past 1000000 characters", id="valueOf"),
    pytest.param("T(String).join(',', trigger.payload.huge)", "grows past 1000000 characters", id="join"),
    pytest.param("trigger.payload.huge == trigger.payload.twin", "100000 evaluation steps", id="equals-op"),
    pytest.param("trigger.payload.huge.equals(trigger.payload.twin)", "100000 evaluation steps", id="equals"),
    pytest.param("{1,2,3,4,5,6,7,8,9,10,11}.![#root.trigger.payload.huge[0].subList(0, 990).toString()]",
                 "builds more than 10000000", id="each-within-limit-but-not-together"),
    pytest.param("#toJson(trigger.payload.huge)", "the result is larger than 1000000", id="toJson"),
])
def test_huge_values_are_refused_at_the_limits(make_ctx: Any, expression: str, message: str) -> None:
    assert message in refused(make_ctx, expression)


def test_the_same_object_is_equal_without_walking_it(make_ctx: Any) -> None:
    assert evaluate_expression("trigger.payload.huge == trigger.payload.huge", make_ctx(execution=huge_execution()))


def test_templating_a_huge_value_into_text_fails_that_expression_only(make_ctx: Any) -> None:
    ctx = make_ctx(execution=huge_execution())
    result, grew = peak_growth(lambda: evaluate_templated(
        {"big": "all: ${trigger.payload.huge}", "fine": "${1 + 1}"}, ctx))
    assert grew < MEMORY_BOUND
    assert result.failed and result.value["fine"] == 2
    assert result.value["big"] == "all: ${trigger.payload.huge}"
    [entry] = result.summary["trigger.payload.huge"]
    assert "larger than 1000000" in entry["description"]


def test_the_time_budget_stops_an_expression(make_ctx: Any) -> None:
    message = refused(make_ctx, "{1,2,3}.![#readYaml('[' + 'x,' * 300000 + 'x]').size()]", max_time_s=0.2)
    assert "took longer than 0.2s" in message


def test_healthz_answers_while_a_hostile_expression_runs(server_env: dict[str, str]) -> None:
    """The evaluate endpoint works in a worker thread: the control plane keeps answering meanwhile."""
    token = read_cli_token(Path(server_env["GRAYLANE_STATE"]))
    base = f"http://{server_env['GRAYLANE_SERVER']}"
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    pipeline = {"application": "trust", "name": "hold", "stages": [
        {"refId": "1", "type": "manualJudgment", "name": "wait here", "requisiteStageRefIds": []}]}
    assert http.post("/api/v1/pipelines", json=pipeline).status_code == 200
    started = http.post("/api/v1/pipelines/hold/start", json={"parameters": {}})
    assert started.status_code == 200, started.text
    execution_id = started.json()["id"]

    answer: dict[str, Any] = {}

    def evaluate() -> None:  # about two seconds of parsing: the expression's whole time budget
        expression = "{1,2,3,4,5,6,7,8}.![#readYaml('[' + 'x,' * 300000 + 'x]').size()]"
        answer["response"] = http.post(f"/api/v1/executions/{execution_id}/evaluate",
                                       json={"expression": expression})

    worker = threading.Thread(target=evaluate)
    worker.start()
    answered_meanwhile = 0  # /healthz answers that came back while the expression was still being evaluated
    time.sleep(0.2)  # let the evaluation start (nothing outside the server shows when it has)
    while worker.is_alive():
        assert http.get("/healthz").status_code == 200
        answered_meanwhile += worker.is_alive()
        time.sleep(0.05)
    worker.join()
    response = answer["response"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["failed"] is True
    assert "took longer than 2s" in str(body["summary"])
    # On the event loop the first /healthz would wait for the whole 2 s evaluation: at most one answer, after it.
    assert answered_meanwhile >= 3, f"only {answered_meanwhile} /healthz answers during the evaluation"
