"""`graylane query`: PromQL over the local mesh from the terminal, against a real control plane whose
telemetry scrapes a stand-in data plane admin port (tests/ui/dataplane_standin.py: reviews v1 at 8 req/s,
v2 at 4 req/s with a quarter failing)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ui.console_server import ConsoleServer, running_server
from tests.ui.dataplane_standin import DataPlaneStandIn

from .conftest import InProcessCli

SHARE = ('sum by (destination_version) (rate(istio_requests_total{reporter="destination",'
         'destination_service_name="reviews"}[5s]))')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    stand_in = DataPlaneStandIn()
    state: Path = tmp_path_factory.mktemp("query") / "state"
    state.mkdir()
    try:
        with running_server(state, env={"GRAYLANE_DATAPLANE_ADMIN": stand_in.url}) as s:
            yield s
    finally:
        stand_in.close()


@pytest.fixture
def cli(server: ConsoleServer) -> InProcessCli:
    return InProcessCli({**server.env, "GRAYLANE_SERVER": f"127.0.0.1:{server.port}", "COLUMNS": "200"})


def _rates(cli: InProcessCli) -> dict[str, float]:
    out = cli("query", SHARE, "-o", "json")
    assert out.returncode == 0, out.stderr
    return {item["metric"]["destination_version"]: float(item["value"][1])
            for item in json.loads(out.stdout)["result"]}


def test_a_query_prints_each_series_and_its_value(cli: InProcessCli) -> None:
    # The server scrapes every second; the first answers may cover less than the window.
    deadline = time.monotonic() + 20
    while set(rates := _rates(cli)) != {"v1", "v2"} or rates["v1"] < 7:
        assert time.monotonic() < deadline, rates
        time.sleep(0.5)  # the next scrape, a second apart
    assert rates["v1"] == pytest.approx(8.0, rel=0.2) and rates["v2"] == pytest.approx(4.0, rel=0.2)
    table = cli("query", SHARE)
    assert table.returncode == 0
    assert '{destination_version="v1"}' in table.stdout and '{destination_version="v2"}' in table.stdout


def test_a_range_query_summarises_each_series(cli: InProcessCli) -> None:
    out = cli("query", 'sum(rate(istio_requests_total{response_code="503",reporter="source"}[5s]))',
              "--range", "10s", "--step", "2s")
    assert out.returncode == 0, out.stderr
    assert "POINTS" in out.stdout and "LAST" in out.stdout


def test_a_bad_query_says_why_and_exits_1(cli: InProcessCli) -> None:
    out = cli("query", "sum(rate(istio_requests_total[1m])")
    assert out.returncode == 1
    assert "unclosed left parenthesis" in out.stderr
