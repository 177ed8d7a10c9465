"""The worked examples in the judge's docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["stats", "transforms", "mannwhitney", "scorer"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"graylane.analysis.judge.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
