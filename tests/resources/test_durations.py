"""The duration formatters in graylane.resources.durations: elapsed time (CLI and console) and query windows."""

from __future__ import annotations

import pytest

from graylane.resources.durations import elapsed_between, format_elapsed, format_window, to_seconds


@pytest.mark.parametrize(("seconds", "text"), [(0, "0.0s"), (-3, "0.0s"), (2, "2.0s"), (59.94, "59.9s"),
                                               (59.96, "1m00s"), (245, "4m05s"), (3599, "59m59s"),
                                               (4500, "1h15m"), (90061, "25h01m")])
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


def test_elapsed_between_epoch_milliseconds() -> None:
    assert elapsed_between(1_000_000, 1_004_500) == "4.5s"
    assert elapsed_between(1_000_000, None, now=1_000 + 4_500) == "1h15m"  # still running: up to now
    assert elapsed_between(1_000_000, 0, now=1_002) == "2.0s"
    assert [elapsed_between(start, 5) for start in (None, 0, -1, "12", True)] == [""] * 5


@pytest.mark.parametrize(("seconds", "text"), [(60, "1m"), (300, "5m"), (90, "90s"), (30, "30s"), (5400, "1h30m"),
                                               (7200, "2h"), (1.5, "1500ms"), (0.25, "250ms"), (0, "0s")])
def test_format_window_is_promql(seconds: float, text: str) -> None:
    assert format_window(seconds) == text
    assert to_seconds(text) == seconds  # reads back as the same window
