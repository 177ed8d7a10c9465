"""`graylane apply/get/describe/history/delete` as a user runs them: real CLI processes, real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from graylane.cli.apply_wait import rollout_message
from graylane.cli.resources import human_duration

DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: NS}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: NS}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 100}
"""
SVC = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: NS, labels: {app: reviews}}
spec:
  selector: {app: reviews}
  ports: [{port: 9080, name: http}]
"""


def bundle(ns: str, *texts: str) -> str:
    return "---\n".join(t.replace("NS", ns) for t in texts)


def one_error_line(stderr: str) -> str:
    # apply prints analyzer findings as kubectl-style `Warning: ...` lines before any error
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("Warning: ")]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_apply_get_and_short_names(cli: Callable[..., object], write: Callable[[str, str], Path]) -> None:
    folder = write("app/a-svc.yaml", bundle("ns1", SVC)).parent
    write("app/b-routing.yaml", bundle("ns1", DR, VS))
    applied = cli("apply", "-f", str(folder))
    assert applied.returncode == 0, applied.stderr  # type: ignore[attr-defined]
    assert applied.stdout.splitlines() == [  # type: ignore[attr-defined]
        "service/reviews created",
        "destinationrule.networking.istio.io/reviews created",
        "virtualservice.networking.istio.io/reviews created",
    ]
    again = cli("apply", "-f", str(folder))
    assert all(line.endswith(" unchanged") for line in again.stdout.splitlines())  # type: ignore[attr-defined]
    table = cli("get", "vs", "-n", "ns1").stdout.splitlines()  # type: ignore[attr-defined]
    assert table[0].split() == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert table[1].split()[:2] == ["reviews", '["reviews"]']
    svc = cli("get", "svc", "-n", "ns1", "-o", "wide").stdout.splitlines()  # type: ignore[attr-defined]
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert "9080/TCP" in svc[1] and "app=reviews" in svc[1]
    dr = yaml.safe_load(cli("get", "dr", "reviews", "-n", "ns1", "-o", "yaml").stdout)  # type: ignore[attr-defined]
    assert dr["spec"]["subsets"][1]["name"] == "v2" and dr["metadata"]["resourceVersion"]
    listed = json.loads(cli("get", "destinationrules", "-A", "-o", "json").stdout)  # type: ignore[attr-defined]
    assert listed["kind"] == "List" and [i["metadata"]["namespace"] for i in listed["items"]] == ["ns1"]
    empty = cli("get", "vs")  # the default namespace has none
    assert empty.returncode == 0 and "No resources found in default namespace." in empty.stderr  # type: ignore


def test_dry_run_prints_a_diff_and_changes_nothing(cli: Callable[..., object],
                                                   write: Callable[[str, str], Path]) -> None:
    path = write("vs.yaml", bundle("ns2", VS))
    cli("apply", "-f", str(path))
    write("vs.yaml", bundle("ns2", VS.replace("subset: v1", "subset: v2")))
    dry = cli("apply", "-f", str(path), "--dry-run")
    assert dry.returncode == 0  # type: ignore[attr-defined]
    out = dry.stdout  # type: ignore[attr-defined]
    assert "virtualservice.networking.istio.io/reviews configured (dry run)" in out
    assert "-    - destination:" not in out and "-        subset: v1\n+        subset: v2" in out
    live = yaml.safe_load(cli("get", "vs", "reviews", "-n", "ns2", "-o", "yaml").stdout)  # type: ignore
    assert live["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"


def test_invalid_fifth_document_is_one_line_and_writes_nothing(cli: Callable[..., object],
                                                               cli_process: Callable[..., object],
                                                               write: Callable[[str, str], Path]) -> None:
    docs = [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: ns3}}\n" for i in range(4)]
    docs.append("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name, namespace: ns3}\n")
    path = write("five.yaml", "---\n".join(docs))
    res = cli_process("apply", "-f", str(path))
    assert res.returncode != 0  # type: ignore[attr-defined]
    line = one_error_line(res.stderr)  # type: ignore[attr-defined]
    assert f"{path}:19" in line and "metadata.name" in line
    listed = cli("get", "cm", "-n", "ns3")
    assert listed.stdout == "" and "No resources found" in listed.stderr  # type: ignore[attr-defined]
    assert cli("history", "cm", "c0", "-n", "ns3").returncode == 2  # type: ignore[attr-defined]


def test_history_diff_restore_and_describe(cli: Callable[..., object], write: Callable[[str, str], Path]) -> None:
    path = write("vs.yaml", bundle("ns4", VS))
    cli("apply", "-f", str(path))
    write("vs.yaml", bundle("ns4", VS.replace("subset: v1", "subset: v2")))
    cli("apply", "-f", str(path))
    table = cli("history", "vs", "reviews", "-n", "ns4").stdout.splitlines()  # type: ignore[attr-defined]
    assert table[0].split()[:4] == ["REVISION", "ACTION", "ACTOR", "AGE"]
    assert [row.split()[:3] for row in table[1:]] == [["1", "created", "user:alice"],
                                                      ["2", "configured", "user:alice"]]
    diff = cli("history", "vs", "reviews", "-n", "ns4", "--diff", "2").stdout  # type: ignore[attr-defined]
    assert "-        subset: v1\n+        subset: v2" in diff
    restored = cli("history", "vs", "reviews", "-n", "ns4", "--restore", "1")
    assert restored.stdout.strip() == ("virtualservice.networking.istio.io/reviews restored to revision 1 "  # type: ignore
                                       "(configured)")
    live = yaml.safe_load(cli("get", "vs", "reviews", "-n", "ns4", "-o", "yaml").stdout)  # type: ignore
    assert live["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"
    described = cli("describe", "vs", "reviews", "-n", "ns4").stdout  # type: ignore[attr-defined]
    assert "Name:         reviews" in described and "Namespace:    ns4" in described
    assert "Resource Version:" in described and "restored (from 1)" in described


def test_delete_by_file_and_by_name(cli: Callable[..., object], write: Callable[[str, str], Path]) -> None:
    path = write("all.yaml", bundle("ns5", SVC, DR))
    cli("apply", "-f", str(path))
    by_name = cli("delete", "svc", "reviews", "-n", "ns5")
    assert by_name.stdout.strip() == 'service "reviews" deleted'  # type: ignore[attr-defined]
    by_file = cli("delete", "-f", str(path))
    assert by_file.returncode == 2  # type: ignore[attr-defined]  # the Service was already gone
    assert 'destinationrule.networking.istio.io "reviews" deleted' in by_file.stdout  # type: ignore
    assert 'service "reviews" not found' in one_error_line(by_file.stderr)  # type: ignore[attr-defined]
    again = cli("delete", "-f", str(path), "--ignore-not-found")
    assert again.returncode == 0 and again.stdout == ""  # type: ignore[attr-defined]


def test_user_errors_are_one_line_with_exit_codes(cli: Callable[..., object], cli_process: Callable[..., object],
                                                  write: Callable[[str, str], Path],
                                                  server_env: dict[str, str]) -> None:
    unknown = cli_process("get", "gizmos")
    assert unknown.returncode == 2  # type: ignore[attr-defined]
    assert "doesn't have a resource type 'gizmos'" in one_error_line(unknown.stderr)  # type: ignore[attr-defined]
    missing = cli("get", "vs", "nope")
    assert missing.returncode == 2  # type: ignore[attr-defined]
    assert "VirtualService default/nope not found" in one_error_line(missing.stderr)  # type: ignore[attr-defined]
    bad_yaml = write("broken.yaml", "apiVersion: v1\nkind: [\n")
    res = cli("apply", "-f", str(bad_yaml))
    assert res.returncode == 1 and f"{bad_yaml}:" in one_error_line(res.stderr)  # type: ignore[attr-defined]
    no_file = cli("apply", "-f", "/nonexistent/x.yaml")
    assert "no such file or folder" in one_error_line(no_file.stderr)  # type: ignore[attr-defined]
    nowhere = type(cli)({**server_env, "GRAYLANE_SERVER": "127.0.0.1:9"})("get", "vs")
    assert nowhere.returncode == 1  # type: ignore[attr-defined]
    assert "cannot reach the Graylane control plane" in one_error_line(nowhere.stderr)  # type: ignore[attr-defined]


def test_apply_from_stdin(cli: Callable[..., object], cli_process: Callable[..., object]) -> None:
    piped = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped, namespace: ns6}\n"
    res = cli_process("apply", "-f", "-", stdin=piped)
    assert res.stdout.strip() == "configmap/piped created"  # type: ignore[attr-defined]
    assert cli("get", "cm", "-n", "ns6", "-o", "name").stdout.strip() == "configmap/piped"  # type: ignore


def test_human_duration_matches_kubectl() -> None:
    cases = {0: "0s", 59: "59s", 119: "119s", 150: "2m30s", 600: "10m", 3600 * 3: "3h", 3600 * 5 + 60: "5h1m",
             3600 * 30: "30h", 86400 * 3: "3d", 86400 * 3 + 3600 * 4: "3d4h", 86400 * 30: "30d",
             86400 * 365 * 3: "3y"}
    assert {s: human_duration(s) for s in cases} == cases


def test_rollout_message_is_kubectls_wording() -> None:
    """`apply --wait` and `rollout status` word the runtime's status as targets.rollout does (kubectl's)."""
    status = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}
    assert rollout_message("r", status, 3) == ('Waiting for deployment "r" rollout to finish: '
                                               "1 out of 3 new replicas have been updated...")
    status.update(updatedReplicas=2)
    assert rollout_message("r", status, 2) == ('Waiting for deployment "r" rollout to finish: '
                                               "1 old replicas are pending termination...")
    status.update(replicas=2, availableReplicas=1)
    assert rollout_message("r", status, 2) == ('Waiting for deployment "r" rollout to finish: '
                                               "1 of 2 updated replicas are available...")
    status.update(availableReplicas=2)  # the counts add up, but the runtime has not caught up with the spec
    assert rollout_message("r", status, 2) == 'Waiting for deployment "r" spec update to be observed...'


def test_apply_wait_without_a_mesh_says_so_after_applying(cli: Callable[..., object],
                                                          write: Callable[[str, str], Path]) -> None:
    path = write("vs.yaml", bundle("ns7", VS))
    res = cli("apply", "-f", str(path), "--wait", "--timeout", "5")
    assert res.returncode == 1  # type: ignore[attr-defined]
    assert res.stdout.strip() == "virtualservice.networking.istio.io/reviews created"  # type: ignore
    assert "mesh control is not running" in one_error_line(res.stderr)  # type: ignore[attr-defined]


DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns8}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web:1}]
"""


def test_deployments_and_pods_without_a_runtime(cli: Callable[..., object],
                                                write: Callable[[str, str], Path]) -> None:
    cli("apply", "-f", str(write("deploy.yaml", DEPLOY)))
    table = cli("get", "deploy", "-n", "ns8", "-o", "wide").stdout.splitlines()  # type: ignore[attr-defined]
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES",
                                "SELECTOR"]
    assert table[1].split()[:4] == ["web", "0/2", "0", "0"] and table[1].split()[-2:] == ["web:1", "app=web"]
    described = cli("describe", "deploy", "web", "-n", "ns8").stdout  # type: ignore[attr-defined]
    assert "Replicas:     2 desired | 0 updated | 0 total | 0 available | 0 unavailable" in described
    pods = cli("get", "pods", "-n", "ns8")
    assert pods.returncode == 1  # type: ignore[attr-defined]
    assert "runtime" in one_error_line(pods.stderr)  # type: ignore[attr-defined]


def test_kind_slash_name_arguments(cli: Callable[..., object], write: Callable[[str, str], Path]) -> None:
    cli("apply", "-f", str(write("both.yaml", bundle("ns9", SVC, DR))))
    both = cli("get", "svc/reviews", "dr/reviews", "-n", "ns9", "-o", "name")
    assert both.stdout.splitlines() == ["service/reviews",  # type: ignore[attr-defined]
                                        "destinationrule.networking.istio.io/reviews"]
    gone = cli("delete", "svc/reviews", "dr/reviews", "-n", "ns9")
    assert gone.stdout.splitlines() == ['service "reviews" deleted',  # type: ignore[attr-defined]
                                        'destinationrule.networking.istio.io "reviews" deleted']
    unknown = cli("delete", "gizmo/x")
    assert unknown.returncode == 2 and "resource type 'gizmo'" in one_error_line(unknown.stderr)  # type: ignore


def test_diff_exits_one_when_apply_would_change_something(cli: Callable[..., object],
                                                          write: Callable[[str, str], Path]) -> None:
    path = write("vs.yaml", bundle("ns10", VS))
    cli("apply", "-f", str(path))
    same = cli("diff", "-f", str(path))
    assert (same.returncode, same.stdout) == (0, "")  # type: ignore[attr-defined]
    write("vs.yaml", bundle("ns10", VS.replace("weight: 100", "weight: 100, headers: {request: {set: {x: y}}}")))
    changed = cli("diff", "-f", str(path))
    assert changed.returncode == 1  # type: ignore[attr-defined]
    assert changed.stdout.startswith("--- live/VirtualService/ns10/reviews")  # type: ignore[attr-defined]
    assert "+      headers:" in changed.stdout  # type: ignore[attr-defined]
