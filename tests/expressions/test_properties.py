"""Property tests: Java integer arithmetic, literal round-trips and templating identities."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graylane.expressions import evaluate_expression, evaluate_templated

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INTS = st.integers(-(10**12), 10**12)
NONZERO = INTS.filter(lambda b: b != 0)


def _java_quotient(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


@SETTINGS
@given(INTS, NONZERO)
def test_integer_division_and_remainder_follow_java(make_ctx: Any, a: int, b: int) -> None:
    ctx = make_ctx()
    quotient = evaluate_expression(f"{a} / {b}", ctx)
    remainder = evaluate_expression(f"{a} % {b}", ctx)
    assert quotient == _java_quotient(a, b)
    assert remainder == a - b * quotient
    assert remainder == 0 or (remainder < 0) == (a < 0)  # the sign of the dividend


@SETTINGS
@given(st.integers(-(2**31), 2**31 - 1))
def test_to_int_round_trips_every_int(make_ctx: Any, n: int) -> None:
    assert evaluate_expression(f"#toInt('{n}')", make_ctx()) == n


@SETTINGS
@given(st.text(max_size=40))
def test_string_literals_round_trip(make_ctx: Any, text: str) -> None:
    single = "'" + text.replace("'", "''") + "'"
    double = '"' + text.replace('"', '""') + '"'
    ctx = make_ctx()
    assert evaluate_expression(single, ctx) == text
    assert evaluate_templated("${" + double + "}", ctx).value == text  # the ${"${VAR}"} escape, generalised


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=15,
)


@SETTINGS
@given(JSON)
def test_values_without_expressions_are_unchanged(make_ctx: Any, value: Any) -> None:
    text = json.dumps(value)
    if "${" in text:
        return
    result = evaluate_templated(value, make_ctx())
    assert result.value == value and result.summary == {} and not result.failed


@SETTINGS
@given(JSON)
def test_read_json_of_to_json_is_identity(make_ctx: Any, value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    if "${" in text:
        return
    literal = "'" + text.replace("'", "''") + "'"
    assert evaluate_expression(f"#readJson(#toJson(#readJson({literal})))", make_ctx()) == value
