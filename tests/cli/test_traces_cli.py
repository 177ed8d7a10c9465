"""`graylane traces` says how many requests get traced, and how to change it."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import InProcessCli


def test_traces_names_the_sampling_rate_and_where_to_change_it(cli: InProcessCli, server_env: dict[str, str]) -> None:
    options = Path(server_env["GRAYLANE_STATE"]) / "mesh-options.json"
    options.unlink(missing_ok=True)
    default = cli("traces")
    assert default.returncode == 0, default.stderr
    assert "sampling: 1% of requests start a trace (Istio's default is 1%)" in default.stdout
    assert f'to trace every request: set "trace_sampling": 100 in {options}' in default.stdout

    options.write_text(json.dumps({"trace_sampling": 100.0}))
    try:
        everything = cli("traces")
    finally:
        options.unlink()
    assert "sampling: 100% of requests start a trace" in everything.stdout
    assert f'to trace fewer: lower "trace_sampling" (percent) in {options}' in everything.stdout
    as_json = cli("traces", "-o", "json")  # scripts get the traces alone
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == []
