"""Fixtures for data-plane tests: a real proxy with its admin port, and real upstream servers, on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import Mesh, running_mesh


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with running_mesh(idle_timeout_s=2.0, header_timeout_s=1.0) as m:
        yield m
