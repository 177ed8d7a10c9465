"""Request bounds over a real socket: body size, document count and size, deep nesting. Each answer is the
API's error shape, and nothing is stored or started."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.server.serve import Served, serving

from graylane.store import Store

DEEP = 100_000


@pytest.fixture
def served(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The default limits (a 100,000-level body is ~200 kB, well under the default 8 MiB)."""
    monkeypatch.delenv("GRAYLANE_BIND_HOST", raising=False)
    store = Store.open()
    try:
        with serving(store) as s:
            yield s
    finally:
        store.close()


@pytest.fixture
def small(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """Limits lowered through the settings' environment variables."""
    monkeypatch.delenv("GRAYLANE_BIND_HOST", raising=False)
    monkeypatch.setenv("GRAYLANE_MAX_BODY_BYTES", "65536")
    monkeypatch.setenv("GRAYLANE_MAX_DOCUMENTS", "5")
    monkeypatch.setenv("GRAYLANE_MAX_DOCUMENT_BYTES", "4096")
    store = Store.open()
    try:
        with serving(store) as s:
            yield s
    finally:
        store.close()


def error(resp: httpx.Response, status: int) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "where", "hint"} and err["message"], err
    return err  # type: ignore[no-any-return]


def cm(name: str, size: int = 10) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "x" * size}}


def test_a_body_over_the_limit_is_413_declared_or_streamed(small: Served) -> None:
    served = small
    big = json.dumps([cm("big", 70_000)]).encode()
    admin = served.operator(headers={"content-type": "application/json"})
    err = error(admin.post("/api/v1/apply", content=big), 413)
    assert "65536 bytes" in err["message"] and "GRAYLANE_MAX_BODY_BYTES" in err["hint"]
    streamed = admin.post("/api/v1/apply", content=iter([big[:40_000], big[40_000:]]))  # chunked: no length
    assert "65536 bytes" in error(streamed, 413)["message"]
    assert served.store.list() == []


def test_too_many_documents_is_422_and_a_too_large_document_413(small: Served) -> None:
    served = small
    admin = served.operator()
    err = error(admin.post("/api/v1/apply", json=[cm(f"c{i}") for i in range(6)]), 422)
    assert "6 documents" in err["message"] and "at most 5" in err["message"]
    yaml_docs = "---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: y{i}}}\n" for i in range(6))
    assert "at most 5" in error(admin.post("/api/v1/apply", content=yaml_docs), 422)["message"]
    err = error(admin.post("/api/v1/apply", json=[cm("ok"), cm("fat", 5000)]), 413)
    assert "ConfigMap default/fat" in err["message"] or "fat" in err["message"]
    assert "4096 bytes" in err["message"] and "GRAYLANE_MAX_DOCUMENT_BYTES" in err["hint"]
    assert served.store.list() == []
    assert admin.post("/api/v1/apply", json=[cm(f"c{i}") for i in range(5)]).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/apply", "/api/v1/pipelines", "/api/v1/pipelines/quick/start",
                                  "/api/v1/webhooks/webhook/ci"])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_refused_with_the_error_shape(served: Served, path: str, opener: str) -> None:
    admin = served.operator(headers={"content-type": "application/json"})
    pipeline = {"application": "shop", "name": "quick", "stages": [{"refId": "1", "type": "wait", "waitTime": 0}],
                "triggers": [{"type": "webhook", "source": "ci", "enabled": True}]}
    assert admin.post("/api/v1/pipelines", json=pipeline).status_code == 200
    body = opener * DEEP + "1" + ("]" if opener == "[" else "}") * DEEP
    client = served.client(headers={"content-type": "application/json"}) if "webhooks" in path else admin
    err = error(client.post(path, content=body), 422)
    assert "nested deeper than 100 levels" in err["message"]
    assert [p["name"] for p in admin.get("/api/v1/pipelines").json()] == ["quick"]
    assert admin.get("/api/v1/executions").json() == []
    assert served.store.list() == []


def test_deeply_nested_yaml_on_apply_is_an_error_not_a_crash(served: Served) -> None:
    admin = served.operator(headers={"content-type": "application/yaml"})
    resp = admin.post("/api/v1/apply", content="[" * 20_000 + "]" * 20_000)
    assert 400 <= resp.status_code < 500
    error(resp, resp.status_code)
    assert served.store.list() == []
    assert admin.get("/healthz").status_code == 200
