"""A pipeline body with any JSON value in any top-level field gets findings naming the field, never an exception
(the API answers 422 with them, not 500)."""

from __future__ import annotations

from typing import Any

import pytest

from graylane.pipelines.model import find_problems

FIELDS = ("application", "name", "stages", "triggers", "parameterConfig", "notifications", "expectedArtifacts",
          "limitConcurrent", "keepWaitingPipelines", "allowUndeclaredParameters", "maxConcurrentExecutions",
          "spelEvaluator", "schema", "template", "variables", "description", "disabled", "roles")
VALUES: tuple[Any, ...] = (True, 0, 5, -1.5, "x", None, {}, {"a": 1}, [1], [None], [{"type": 7}])


@pytest.mark.parametrize("field", FIELDS)
def test_any_value_in_any_field_gives_findings_not_an_error(field: str) -> None:
    for value in VALUES:
        body = {"application": "a", "name": "p", "stages": [], field: value}
        problems = find_problems(body)  # must not raise
        assert all(str(p) for p in problems)


@pytest.mark.parametrize("field", ["triggers", "expectedArtifacts", "parameterConfig", "notifications"])
def test_a_list_field_given_a_scalar_is_named(field: str) -> None:
    problems = [str(p) for p in find_problems({"application": "a", "name": "p", "stages": [], field: True})]
    assert any(p.startswith(f"{field}: ") and "must be a list" in p for p in problems), problems


@pytest.mark.parametrize(("parameters", "artifacts", "field"), [
    (True, [], "parameters"), ([["a", 1]], [], "parameters"), ({}, True, "artifacts"), ({}, [1], "artifacts")])
def test_a_trigger_with_ill_shaped_parameters_or_artifacts_is_refused_naming_the_field(
        parameters: Any, artifacts: Any, field: str) -> None:
    from graylane.errors import ValidationError
    from graylane.pipelines.triggers import build_trigger

    config = {"application": "a", "name": "p", "stages": []}
    with pytest.raises(ValidationError, match=f"^{field}: must be"):
        build_trigger(config, {"type": "webhook", "parameters": parameters, "artifacts": artifacts})
