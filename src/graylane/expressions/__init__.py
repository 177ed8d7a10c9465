"""Pipeline expressions: a safe SpEL subset compatible with Spinnaker and CODING (`${...}` templates).

Public API: EvaluationContext, ExpressionOptions, evaluate_templated, evaluate_expression,
evaluate_for_execution, Templated, ExpressionError (and its subclasses).
"""

from __future__ import annotations

from graylane.expressions.adhoc import evaluate_for_execution, find_stage
from graylane.expressions.context import EvaluationContext, ExpressionOptions, StageRef
from graylane.expressions.errors import (
    EvaluationError,
    ExpressionError,
    ExpressionSyntaxError,
    FunctionError,
    LimitExceeded,
)
from graylane.expressions.functions import REGISTRY as FUNCTIONS
from graylane.expressions.template import SUMMARY_KEY, Templated, evaluate_expression, evaluate_templated

__all__ = [
    "FUNCTIONS",
    "SUMMARY_KEY",
    "EvaluationContext",
    "EvaluationError",
    "ExpressionError",
    "ExpressionOptions",
    "ExpressionSyntaxError",
    "FunctionError",
    "LimitExceeded",
    "StageRef",
    "Templated",
    "evaluate_expression",
    "evaluate_for_execution",
    "evaluate_templated",
    "find_stage",
]
