"""The resources API (/api/v1/apply, /resources/...): what a client sees, over a real store."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from graylane.resources.document import ResourceKey
from graylane.store import Store
from graylane.store import tables as t

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""


def cm(name: str, value: str = "v", namespace: str | None = None) -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}{ns}}}\ndata: {{k: {value}}}\n"


def apply(api: TestClient, text: str, **params: Any) -> Any:
    return api.post("/api/v1/apply", content=text, params=params, headers={"content-type": "application/yaml"})


def test_apply_creates_then_reports_unchanged(api: TestClient) -> None:
    first = apply(api, VS)
    assert first.status_code == 200
    [res] = first.json()["results"]
    assert (res["kind"], res["group"], res["namespace"], res["name"], res["action"]) == (
        "VirtualService", "networking.istio.io", "default", "reviews", "created")
    again = apply(api, VS).json()
    assert again["results"][0]["action"] == "unchanged"
    assert again["revision"] == first.json()["revision"]


def test_dry_run_returns_a_diff_and_stores_nothing(api: TestClient) -> None:
    apply(api, VS)
    resp = apply(api, VS.replace("{host: reviews}", "{host: reviews, subset: v2}"), dryRun="All").json()
    assert resp["dryRun"] is True
    assert resp["results"][0]["action"] == "configured"
    assert "+        subset: v2" in resp["results"][0]["diff"]
    body = api.get("/api/v1/resources/vs/reviews").json()
    assert "subset" not in body["spec"]["http"][0]["route"][0]["destination"]


def test_invalid_fifth_document_writes_nothing(api: TestClient, api_store: Store) -> None:
    good = [cm(f"c{i}") for i in range(4)]
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n"
    files = {"files": [{"name": "bundle.yaml", "text": "---\n".join([*good, bad])}]}
    resp = api.post("/api/v1/apply", json=files)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["where"] == "bundle.yaml:23"  # the fifth document's metadata
    assert "metadata.name is required" in err["message"]
    assert api.get("/api/v1/resources/cm").json()["items"] == []
    assert api.get("/api/v1/resources/cm/c0").status_code == 404
    with api_store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.history)).scalar_one() == 0


def test_stale_resource_version_is_409(api: TestClient) -> None:
    apply(api, cm("a"))
    apply(api, cm("a", "w"))
    stale = cm("a", "x").replace("{name: a}", "{name: a, resourceVersion: '1'}")
    resp = apply(api, stale)
    assert resp.status_code == 409
    assert "resourceVersion 1" in resp.json()["error"]["message"]
    assert api.get("/api/v1/resources/configmaps/a").json()["data"] == {"k": "w"}


def test_list_by_short_name_and_namespace(api: TestClient) -> None:
    apply(api, cm("a") + "---\n" + cm("b", namespace="shop") + "---\n" + VS)
    assert [i["metadata"]["name"] for i in api.get("/api/v1/resources/cm").json()["items"]] == ["a", "b"]
    shop = api.get("/api/v1/resources/ConfigMaps", params={"namespace": "shop"}).json()
    assert [i["metadata"]["name"] for i in shop["items"]] == ["b"]
    vs = api.get("/api/v1/resources/virtualservices.networking.istio.io").json()
    assert (vs["kind"], vs["group"], len(vs["items"])) == ("VirtualService", "networking.istio.io", 1)


def test_unknown_kinds_are_stored_with_a_warning_and_found_by_plural(api: TestClient) -> None:
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n"
    resp = apply(api, widget).json()
    assert any("Widget" in w and "does not act on it" in w for w in resp["warnings"])
    assert api.get("/api/v1/resources/widgets/w").json()["spec"] == {"size": 1}
    missing = api.get("/api/v1/resources/gizmos")
    assert missing.status_code == 404 and "gizmos" in missing.json()["error"]["message"]


def test_delete_by_name_then_404(api: TestClient) -> None:
    apply(api, VS)
    resp = api.delete("/api/v1/resources/vs/reviews")
    assert resp.status_code == 200 and resp.json()["deleted"][0]["name"] == "reviews"
    assert api.get("/api/v1/resources/vs/reviews").status_code == 404
    assert api.delete("/api/v1/resources/vs/reviews").status_code == 404


def test_delete_by_documents_reports_missing_ones(api: TestClient) -> None:
    apply(api, cm("a"))
    resp = api.post("/api/v1/delete", content=cm("a") + "---\n" + cm("zzz"),
                    headers={"content-type": "application/yaml"}).json()
    assert [d["name"] for d in resp["deleted"]] == ["a"]
    assert [d["name"] for d in resp["notFound"]] == ["zzz"]


def test_history_diff_and_restore(api: TestClient, api_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLANE_USER", "alice")  # the loopback user the server trusts
    apply(api, cm("a", "one"))
    api.post("/api/v1/apply", content=cm("a", "two"), headers={"content-type": "application/yaml",
                                                                  "X-Graylane-User": "bob"})
    hist = api.get("/api/v1/resources/cm/a/history").json()["items"]
    assert [(h["revision"], h["action"], h["actor"]) for h in hist] == [(1, "created", "user:alice"),
                                                                       (2, "configured", "user:bob")]
    diff = api.get("/api/v1/resources/cm/a/history/2/diff").json()["diff"]
    assert "-  k: one\n+  k: two\n" in diff
    assert api.get("/api/v1/resources/cm/a/history/1").json()["body"]["data"] == {"k": "one"}
    back = api.post("/api/v1/resources/cm/a/restore", params={"revision": 1}).json()
    assert back["result"]["action"] == "configured"
    assert api.get("/api/v1/resources/cm/a").json()["data"] == {"k": "one"}
    last = api_store.history(ResourceKey("", "ConfigMap", "default", "a"))[-1]
    assert (last.revision, last.restored_from, last.actor) == (3, 1, "user:alice")
    assert api.get("/api/v1/resources/cm/a/history/9").status_code == 404


def test_namespace_override_fills_and_refuses_mismatch(api: TestClient) -> None:
    resp = apply(api, cm("a"), namespace="shop").json()
    assert resp["results"][0]["namespace"] == "shop"
    clash = apply(api, cm("b", namespace="other"), namespace="shop")
    assert clash.status_code == 422 and "does not match" in clash.json()["error"]["message"]


def test_json_list_of_documents(api: TestClient) -> None:
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}} for n in ("x", "y")]
    resp = api.post("/api/v1/apply", json=docs).json()
    assert [r["action"] for r in resp["results"]] == ["created", "created"]
    assert api.get("/api/v1/revision").json()["revision"] == resp["revision"]


def test_yaml_errors_name_the_file_and_line(api: TestClient) -> None:
    resp = api.post("/api/v1/apply", json={"files": [{"name": "x.yaml", "text": "a: [1\n"}]})
    assert resp.status_code == 422 and resp.json()["error"]["where"].startswith("x.yaml:")


def test_openapi_lists_the_resource_routes(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/apply", "/api/v1/delete", "/api/v1/resources/{kind}/{name}",
                 "/api/v1/resources/{kind}/{name}/history/{rev}/diff", "/api/v1/resources/{kind}/{name}/restore"):
        assert path in paths
    assert api.get("/healthz").json()["status"] == "ok"


def test_history_survives_delete_and_restore_recreates(api: TestClient) -> None:
    apply(api, cm("gone", "one"))
    api.delete("/api/v1/resources/cm/gone")
    hist = api.get("/api/v1/resources/cm/gone/history").json()["items"]
    assert [(h["action"], h["deleted"]) for h in hist] == [("created", False), ("deleted", True)]
    diff = api.get("/api/v1/resources/cm/gone/history/1/diff", params={"against": "current"}).json()["diff"]
    assert diff.endswith("-data:\n-  k: one\n")
    back = api.post("/api/v1/resources/cm/gone/restore", params={"revision": 1}).json()
    assert back["result"]["action"] == "created"
    assert api.get("/api/v1/resources/cm/gone").json()["data"] == {"k": "one"}


def test_diffs_can_be_left_out_of_large_applies(api: TestClient) -> None:
    with_diff = apply(api, cm("d1")).json()["results"][0]
    assert with_diff["diff"].startswith("--- live/ConfigMap/default/d1")
    without = apply(api, cm("d2"), diff="false").json()["results"][0]
    assert "diff" not in without and without["action"] == "created"


def test_local_images_remember_the_folder_of_their_file(api: TestClient, tmp_path: Any) -> None:
    """A LocalImage's relative workingDir resolves against the applied file's folder, not the server's."""
    from graylane.cli.resources import _file_entry
    from graylane.runtime.images import SOURCE_DIR_ANNOTATION, applied_entries

    path = tmp_path / "apps" / "images.yaml"
    path.parent.mkdir()
    path.write_text("apiVersion: graylane.io/v1alpha1\nkind: LocalImage\nmetadata: {name: web}\n"
                    "spec: {image: 'example.com/web:*', command: [python3, app.py], workingDir: src}\n")
    entry = _file_entry(str(path), path.read_text())
    assert entry["dir"] == str(path.parent.resolve())
    assert "dir" not in _file_entry("-", "")
    resp = api.post("/api/v1/apply", json={"files": [entry]})
    assert resp.status_code == 200, resp.text
    body = api.get("/api/v1/resources/LocalImage/web").json()
    assert body["metadata"]["annotations"][SOURCE_DIR_ANNOTATION] == str(path.parent.resolve())
    [image] = applied_entries([body])
    assert image.working_dir == str(path.parent.resolve() / "src")
