"""`graylane validate` and `graylane apply` against a running control plane, as a user types them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEPLOYED = """\
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
"""
ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"""
WEIGHTS_90 = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-split}
spec:
  hosts: [reviews.default.svc.cluster.local]
  gateways: [mesh]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 60}
    - {destination: {host: reviews, subset: v1}, weight: 30}
"""


def graylane(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_validate_judges_files_with_the_live_resources_unless_use_kube_false(
        control_plane: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "deployed.yaml").write_text(DEPLOYED)
    applied = graylane(control_plane, "apply", "-f", str(tmp_path / "deployed.yaml"))
    assert applied.returncode == 0, applied.stderr
    (tmp_path / "vs.yaml").write_text(ROUTE)

    live = graylane(control_plane, "validate", "-f", str(tmp_path / "vs.yaml"))
    url = "http://" + control_plane["GRAYLANE_SERVER"]
    assert live.returncode == 0, live.stdout + live.stderr
    assert live.stdout.strip().endswith(f"No validation issues found in 1 document (with 3 live resources from {url}).")

    alone = graylane(control_plane, "validate", "-f", str(tmp_path / "vs.yaml"), "--use-kube=false")
    assert alone.returncode == 1
    lines = alone.stdout.splitlines()
    where = f"(VirtualService default/reviews {tmp_path / 'vs.yaml'}"
    assert f'Error [IST0101] {where}:8) Referenced host not found: "reviews"' in lines
    assert f'Error [IST0101] {where}:8) Referenced host+subset in destinationrule not found: "reviews+v1"' in lines
    assert lines[-1] == "2 errors, 0 warnings, 0 info in 1 document."


def test_apply_prints_analyzer_warnings_and_applies(control_plane: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "deployed.yaml").write_text(DEPLOYED)
    assert graylane(control_plane, "apply", "-f", str(tmp_path / "deployed.yaml")).returncode == 0
    (tmp_path / "split.yaml").write_text(WEIGHTS_90)
    applied = graylane(control_plane, "apply", "-f", str(tmp_path / "split.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert "virtualservice.networking.istio.io/reviews-split created" in applied.stdout
    warnings = [line for line in applied.stderr.splitlines() if line.startswith("Warning: ")]
    assert warnings == [f"Warning: [GL0002] (VirtualService default/reviews-split {tmp_path / 'split.yaml'}:8) "
                        "route weights sum to 90, not 100: Istio 1.15+ sends each destination weight/sum of the "
                        "traffic, Istio 1.14 and older reject this"]
    got = graylane(control_plane, "get", "vs", "reviews-split", "-o", "name")
    assert got.returncode == 0 and "reviews-split" in got.stdout
