"""Fixtures for runtime tests: a real SQLite store, a running Runtime, and a Deployment builder."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from graylane.runtime.backoff import BackoffPolicy
from graylane.runtime.reconciler import Runtime
from graylane.store import Store

ECHO_APP = str(Path(__file__).with_name("echo_app.py"))


def deployment(name: str = "echo", version: str = "v1", replicas: int = 2, **container: Any) -> dict[str, Any]:
    spec_container = {
        "name": name, "image": "local", "command": [sys.executable, ECHO_APP, version],
        "ports": [{"containerPort": 9080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 9080}, "periodSeconds": 1},
        **container,
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "version": version}},
                                  "spec": {"terminationGracePeriodSeconds": 2, "containers": [spec_container]}}}}


async def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def store(state_dir: Path) -> Store:
    s = Store.open()
    yield s
    s.close()


@pytest_asyncio.fixture
async def runtime(store: Store, state_dir: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(store, state_dir, tick_s=0.05, backoff=BackoffPolicy(initial_s=10.0))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.shutdown_workloads()
