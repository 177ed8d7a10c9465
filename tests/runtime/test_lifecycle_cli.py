"""`graylane logs` reads replica logs from the state folder (no control plane needed); bad targets fail clearly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graylane.cli.main import app
from graylane.errors import NotFound, ValidationError
from graylane.resources.document import ResourceKey
from graylane.runtime.reconciler import Runtime
from graylane.store import Store

from .conftest import deployment, eventually

KEY = ResourceKey("apps", "Deployment", "default", "echo")


@pytest.mark.asyncio
async def test_logs_of_a_deployment_and_its_previous_container(store: Store, runtime: Runtime,
                                                              state_dir: Path) -> None:
    store.apply([deployment(replicas=1)], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    pod = runtime.pods()[0]
    runner = CliRunner()
    result = runner.invoke(app, ["logs", "deploy/echo"])
    assert result.exit_code == 0, result.output
    assert f"serving v1 on {pod['port']}" in result.output
    os.kill(pod["pid"], signal.SIGKILL)
    await eventually(lambda: runtime.pods()[0]["restarts"] == 1 and runtime.pods()[0]["isReady"], what="restart")
    previous = runner.invoke(app, ["logs", "deploy/echo", "--previous"])
    assert previous.exit_code == 0, previous.output
    assert previous.output.count("starting:") == 1 and f"serving v1 on {pod['port']}" in previous.output
    current = runner.invoke(app, ["logs", "deploy/echo", "--tail", "100"])
    assert current.output.count("starting:") == 1  # the restarted container's log starts afresh


def test_logs_of_an_unknown_deployment_is_one_clear_error(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["logs", "deploy/nope"])
    assert isinstance(result.exception, NotFound)  # main() turns it into one line and exit code 2
    assert "no pods found for deployment default/nope" in str(result.exception)


def test_gateway_port_mapping_must_be_port_equals_port(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--gateway-port", "80:abc"])
    assert isinstance(result.exception, ValidationError)
    assert "--gateway-port '80:abc' is not PORT=HOSTPORT" in str(result.exception)
