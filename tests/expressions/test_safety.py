"""Limits and the sandbox: length, depth, steps, sizes, no Python attributes; fuzzed with hypothesis."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graylane.expressions
from graylane.expressions import ExpressionError, LimitExceeded, evaluate_expression, evaluate_templated
from graylane.expressions.evaluate import Evaluator, InternalEvaluationError
from graylane.expressions.parser import parse

TEN = "{1,2,3,4,5,6,7,8,9,10}"


@pytest.mark.parametrize(("expression", "options", "message"), [
    pytest.param("1" * 10_001, {}, "the limit is 10000", id="length"),
    pytest.param("(" * 400 + "1" + ")" * 400, {}, "nests deeper than", id="parentheses-depth"),
    pytest.param("-" * 400 + "1", {}, "nests deeper than", id="unary-depth"),
    pytest.param(f"{TEN}.![{TEN}.![{TEN}.![#this * 2]]]", {"max_steps": 2_000}, "evaluation steps", id="steps"),
    pytest.param("'x' * 100000000", {}, "the string grows past", id="string-repeat"),
    pytest.param("'ab'.replace('', 'xxxxxxxxxx')", {"max_string_length": 10}, "grows past", id="replace-growth"),
    pytest.param("'x' * 200", {"max_result_size": 100}, "the result is larger than 100", id="result-size"),
    pytest.param("9 ^ 999999", {}, "grows past 4096 bits", id="huge-power"),
    pytest.param("{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20}.!['x' * 900000].size()", {},
                 "builds more than 10000000 characters or items in total", id="total-allocation"),
    pytest.param("{1,2,3,4,5,6,7,8,9,10}.![#toJson(#root.trigger)].size()", {"max_total_size": 3_000},
                 "builds more than 3000", id="total-allocation-helpers"),
    pytest.param("T(String).join(',', " + TEN + ".![" + TEN + "])", {"max_string_length": 50}, "grows past",
                 id="join-growth"),
    pytest.param("T(String).format('%2000000s', 'x')", {}, "larger than the string limit", id="format-width"),
    pytest.param("T(String).format('%.2000000f', 1.5)", {}, "larger than the string limit",
                 id="format-precision"),
    pytest.param("T(String).format('%50s%50s', 'a', 'b')", {"max_string_length": 60}, "grows past",
                 id="format-growth"),
    pytest.param("'abc'.replaceAll('', 'xxxxxxxxxx')", {"max_string_length": 20}, "grows past",
                 id="replaceAll-growth"),
    pytest.param("'ab'.repeat(100000000)", {}, "grows past", id="repeat-growth"),
    pytest.param("new java.text.SimpleDateFormat('" + "y" * 300 + "').format(new java.util.Date())",
                 {"max_string_length": 100}, "grows past|larger than", id="date-pattern-growth"),
    pytest.param(TEN + ".![T(String).format('%900000s', 'x')].size()", {"max_total_size": 3_000_000},
                 "builds more than 3000000", id="format-counts-toward-total"),
    pytest.param(TEN + ".![new String('x' * 900000)].size()", {"max_total_size": 3_000_000},
                 "builds more than 3000000", id="constructed-values-count-toward-total"),
])
def test_limits(make_ctx: Any, expression: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(LimitExceeded, match=message):
        evaluate_expression(expression, make_ctx(**options))


def test_long_flat_sum_is_fine(make_ctx: Any) -> None:
    assert evaluate_expression("+".join(["1"] * 3000), make_ctx()) == 3000


def test_step_budget_is_never_overrun(make_ctx: Any) -> None:
    ctx = make_ctx(max_steps=100)
    evaluator = Evaluator(ctx)
    with pytest.raises(LimitExceeded):
        evaluator.run(parse(f"{TEN}.![{TEN}.![#this]]"))
    assert evaluator.steps <= 102


@pytest.mark.parametrize("expression", [
    "{a:1}.__class__", "#root.__class__", "#this.__dict__", "trigger.__globals__", "trigger['__init__']",
])
def test_python_attributes_are_just_missing_keys(make_ctx: Any, expression: str) -> None:
    assert evaluate_expression(expression, make_ctx()) is None


@pytest.mark.parametrize("expression", [
    "'a'.__class__", "''.__class__.__mro__", "(1).__add__(2)", "{1}.pop()", "'x'.format()", "'x'.join({'a'})",
    "T(os).system('id')", "T(__builtins__).eval('1')", "#stage.__globals__", "#toInt.__code__",
    "execution.__globals__",  # the execution is an object (orca's PipelineExecution): no such getter
])
def test_no_way_into_python(make_ctx: Any, expression: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate_expression(expression, make_ctx())
    assert not isinstance(caught.value, InternalEvaluationError)


def test_new_constructs_only_types_t_allows() -> None:
    from graylane.expressions.constructors import CONSTRUCTORS
    from graylane.expressions.statics import TYPES

    assert set(CONSTRUCTORS) <= set(TYPES)


@pytest.mark.parametrize("expression", [
    "new java.lang.Runtime()", "new java.lang.ProcessBuilder({'sh'})", "new java.io.File('/etc/passwd')",
    "new java.net.URL('http://x')", "new Class()", "new java.lang.Thread()", "new __builtins__()",
    "new java.util.Date().getClass()", "new java.util.Random().__class__", "new Date().__init__(0)",
])
def test_constructors_keep_the_sandbox(make_ctx: Any, expression: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate_expression(expression, make_ctx())
    assert not isinstance(caught.value, InternalEvaluationError)


def test_package_never_calls_eval_exec_or_dynamic_getattr() -> None:
    folder = Path(graylane.expressions.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "__import__", "compile"), f"{path.name}:{node.lineno}"
                if node.func.id in ("getattr", "setattr", "hasattr"):
                    # a constant name, or nodes.children() reading dataclass slots by their declared names
                    constant = len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                    assert constant or path.name == "nodes.py", f"{path.name}:{node.lineno}"


TOKENS = st.sampled_from([
    "1", "0", "-", "+", "*", "/", "%", "^", "(", ")", "[", "]", "{", "}", ",", ":", ".", "?", "?:", "?.",
    ".?[", ".![", ".^[", ".$[", "'a'", '"b"', "''", "#this", "#root", "#stage", "#toInt", "#judgment",
    "#toJson", "#readYaml", "#nope", "T", "Math", "java.lang.Math", "true", "null", "and", "or", "not", "!",
    "==", "!=", "<", ">=", "eq", "matches", "'.*'", "'('", "execution", "stages", "parameters", "size",
    "split", "substring", "__class__", "1.5", "0x1F", "${", "}", " ", "\n", "'设置灰度比例'", "'x' * 99",
    "new", "Integer", "java.util.Date", "java.text.SimpleDateFormat", "Random", "format", "'%s'", "'%5.2f'",
    "'yyyy'", "length", "replaceAll", "'$1'",
])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TOKENS, max_size=25))
def test_fuzz_token_soup_only_raises_expression_errors(make_ctx: Any, tokens: list[str]) -> None:
    text = "".join(tokens)
    try:
        evaluate_expression(text, make_ctx(max_steps=5_000))
    except InternalEvaluationError:
        raise
    except ExpressionError:
        pass
    result = evaluate_templated({"k": text, text: [text]}, make_ctx(max_steps=5_000))
    assert isinstance(result.summary, dict)
    assert all(e.get("exceptionType") != "InternalEvaluationError" for v in result.summary.values() for e in v)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_fuzz_arbitrary_text_only_raises_expression_errors(make_ctx: Any, text: str) -> None:
    try:
        evaluate_expression(text, make_ctx(max_steps=5_000))
    except InternalEvaluationError:
        raise
    except ExpressionError:
        pass


def _expressions() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["1", "2.5", "-3", "'s'", "true", "null", "{1,2}", "{a:1}", "parameters",
                              "#this", "waitTime", "region", "execution.stages"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%", "^", "==", "<", "and", "or",
                                                   "?:", "matches"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        postfix = st.tuples(inner, st.sampled_from([".size()", ".toString()", "[0]", "['a']", ".![#this]",
                                                    ".?[#this == 1]", ".^[true]", "?.a", ".length()"])
                            ).map(lambda t: f"({t[0]}){t[1]}")
        call = st.tuples(st.sampled_from(["#toInt", "#toJson", "#stageExists", "#toBoolean", "#alphanumerical"]),
                         inner).map(lambda t: f"{t[0]}({t[1]})")
        ternary = st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})")
        return st.one_of(binary, postfix, call, ternary, inner.map(lambda s: f"!({s})"))

    return st.recursive(leaves, extend, max_leaves=12)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_expressions())
def test_fuzz_well_formed_expressions_evaluate_or_raise_expression_error(make_ctx: Any, text: str) -> None:
    parse(text)  # generated text is always syntactically valid
    try:
        evaluate_expression(text, make_ctx(max_steps=5_000))
    except InternalEvaluationError:
        raise
    except ExpressionError as exc:
        assert exc.expression == text and exc.cause
