"""`graylane validate` through the real CLI app and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graylane.cli.main import app

GOOD = """\
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {containers: [{name: reviews, image: "reviews:1"}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"""
WARN = "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: reviews}\n"
BAD_SUBSET = GOOD.replace("destination: {host: reviews, subset: v1}", "destination: {host: reviews, subset: v4}")

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "networking").mkdir()
    return tmp_path


def test_clean_input_exits_zero(folder: Path):
    (folder / "app.yaml").write_text(GOOD)
    result = runner.invoke(app, ["validate", "-f", str(folder)])
    assert result.exit_code == 0, result.output
    assert "No validation issues found in 4 documents." in result.output


def test_errors_exit_one_with_one_line_each(folder: Path):
    path = folder / "networking" / "vs.yaml"
    path.write_text(BAD_SUBSET)
    result = runner.invoke(app, ["validate", "-f", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == (f"Error [IST0101] (VirtualService default/reviews {path}:31) "
                        'Referenced host+subset in destinationrule not found: "reviews+v4"')
    assert lines[-1] == "1 error, 0 warnings, 0 info in 4 documents."


def test_warnings_pass_unless_fail_on_warnings(folder: Path):
    (folder / "app.yaml").write_text(GOOD + WARN)
    assert runner.invoke(app, ["validate", "-f", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["validate", "-f", str(folder), "--fail-on-warnings"])
    assert result.exit_code == 1  # the CLI's scheme: refused
    assert "Warning [GL0001] (HorizontalPodAutoscaler default/reviews" in result.output


def test_json_output(folder: Path):
    (folder / "app.yaml").write_text(BAD_SUBSET)
    result = runner.invoke(app, ["validate", "-f", str(folder / "app.yaml"), "-o", "json"])
    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert (payload["documents"], payload["errors"], payload["warnings"]) == (4, 1, 0)
    [finding] = payload["findings"]
    assert (finding["code"], finding["line"], finding["path"]) == ("IST0101", 31,
                                                                  "spec.http[0].route[0].destination.subset")


def test_stdin(folder: Path):
    result = runner.invoke(app, ["validate", "-f", "-"], input=GOOD.replace("subsets:", "subset:"))
    assert result.exit_code == 1
    assert "(DestinationRule default/reviews -:22) spec.subset: unknown field" in result.output


def test_unreadable_input_is_refused_and_a_missing_path_is_not_found(folder: Path):
    (folder / "broken.yaml").write_text("kind: [\n")
    result = runner.invoke(app, ["validate", "-f", str(folder / "broken.yaml")])
    assert result.exit_code == 1
    assert "broken.yaml" in result.output
    missing = runner.invoke(app, ["validate", "-f", str(folder / "nope.yaml")])
    assert missing.exit_code == 2
    assert "nope.yaml: no such file or folder" in missing.output


def test_help_documents_exit_codes():
    result = runner.invoke(app, ["validate", "--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.output and "--fail-on-warnings" in result.output


def test_real_subprocess(folder: Path):
    graylane = Path(sys.executable).parent / "graylane"
    (folder / "vs.yaml").write_text(BAD_SUBSET)
    proc = subprocess.run([str(graylane), "validate", "-f", str(folder / "vs.yaml")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert 'Referenced host+subset in destinationrule not found: "reviews+v4"' in proc.stdout
    assert proc.stderr == ""


def test_no_input_is_unreadable_input():
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 1
    assert "no input" in result.output


def test_account_adds_what_is_already_deployed_to_the_analysis(tmp_path: Path, state_dir: Path) -> None:
    """`--account local` judges references against the store; offline, the same file has a dangling subset."""
    from graylane.resources.load import load_text
    from graylane.store import Store

    store = Store.open()
    store.apply(load_text(GOOD, "deployed.yaml")[:3], actor="user:test")  # Service, Deployment, DestinationRule
    store.close()
    vs = tmp_path / "vs.yaml"
    vs.write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
                  "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n")
    offline = CliRunner().invoke(app, ["validate", "-f", str(vs), "-o", "json"])
    assert offline.exit_code == 1 and "IST0101" in offline.output
    live = CliRunner().invoke(app, ["validate", "-f", str(vs), "-o", "json", "--account", "local"])
    assert live.exit_code == 0, live.output
    assert json.loads(live.output)["errors"] == 0
