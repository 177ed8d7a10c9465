"""Webhook triggers against hostile callers, through the real server on a socket: unset secretEnv,
replays (signed deliveries, Alertmanager's retries and HA copies), the wrong signature algorithm, what a
refusal tells, and timestamps. Each refusal checks that no execution started."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.pipelines.alertmanager import alert, notification
from tests.server.serve import Served, serving

from graylane.store import Store

SECRET = "s3cret"


def pipeline(name: str, trigger: dict[str, Any]) -> dict[str, Any]:
    return {"application": "ci", "name": name,
            "triggers": [{"type": "webhook", "source": "ci", "enabled": True, **trigger}],
            "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}


@pytest.fixture
def served(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.delenv("GRAYLANE_BIND_HOST", raising=False)
    monkeypatch.delenv("CI_HOOK_SECRET", raising=False)
    store = Store.open()
    try:
        with serving(store) as s:
            yield s
    finally:
        store.close()


def sign(body: bytes, secret: str = SECRET, algo: str = "sha256", prefix: bytes = b"") -> str:
    return f"{algo}=" + hmac.new(secret.encode(), prefix + body, getattr(hashlib, algo)).hexdigest()


def executions(s: Served) -> list[dict[str, Any]]:
    return s.operator().get("/api/v1/executions").json()  # type: ignore[no-any-return]


def hook(s: Served, body: bytes, **headers: str) -> httpx.Response:
    """As GitHub or a CI system calls it: no token, no cookie."""
    return s.client().post("/api/v1/webhooks/webhook/ci", content=body,
                           headers={"content-type": "application/json", **headers})


def test_an_unset_secret_env_is_reported_at_import_and_refuses_every_request(served: Served) -> None:
    saved = served.operator().post("/api/v1/pipelines", json=pipeline("guarded", {"secretEnv": "CI_HOOK_SECRET"}))
    assert saved.status_code == 200
    [warning] = saved.json()["warnings"]
    assert "secretEnv CI_HOOK_SECRET is not set" in warning and "refuses every request" in warning
    body = b'{"ref": "main"}'
    for headers in ({}, {"X-Hub-Signature-256": sign(body)}, {"X-Hub-Signature-256": sign(body, secret="")}):
        resp = hook(served, body, **headers)
        assert resp.status_code == 403, resp.text
    assert executions(served) == []


def test_a_replayed_signed_delivery_starts_nothing(served: Served) -> None:
    served.operator().post("/api/v1/pipelines", json=pipeline("signed", {"secret": SECRET}))
    body = json.dumps({"ref": "main"}).encode()
    first = hook(served, body, **{"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "d-1"})
    assert first.status_code == 202 and len(first.json()["executions"]) == 1
    replay = hook(served, body, **{"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "d-1"})
    assert replay.status_code == 200
    assert replay.json() == {"eventProcessed": False, "source": "ci", "executions": [], "duplicate": True,
                             "dedupeKey": "delivery:d-1"}
    # Without a delivery id the signed body itself is the key: the same bytes start once.
    other = json.dumps({"ref": "release"}).encode()
    assert hook(served, other, **{"X-Hub-Signature-256": sign(other)}).status_code == 202
    again = hook(served, other, **{"X-Hub-Signature-256": sign(other)})
    assert again.json()["duplicate"] is True and again.json()["dedupeKey"].startswith("sha256:")
    assert len(executions(served)) == 2
    # A new delivery of the same body is a new event.
    assert hook(served, body, **{"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "d-2"}).status_code == 202
    assert len(executions(served)) == 3


def test_an_alertmanager_notification_starts_once_per_alert_event(served: Served) -> None:
    """Alertmanager sends no delivery id and no signature: its alert group and alerts are the key. Its retry and
    the copy a second HA peer sends start nothing; a new alert in the group, the resolved notification and an
    alert firing again each start one execution."""
    on_alert = pipeline("on-alert", {"source": "alertmanager"})
    assert served.operator().post("/api/v1/pipelines", json=on_alert).status_code == 200

    def send(body: dict[str, Any]) -> httpx.Response:
        resp = served.client().post("/api/v1/webhooks/webhook/alertmanager", json=body)  # as Alertmanager: no token
        assert resp.status_code in (200, 202), resp.text
        return resp

    a1 = alert("3f9c2a61d0b4e7a8", pod="reviews-v2-0")
    first = send(notification(a1))
    assert first.status_code == 202 and len(first.json()["executions"]) == 1
    retry = send(notification(a1))
    assert retry.json()["duplicate"] is True and retry.json()["executions"] == []
    key = retry.json()["dedupeKey"]
    assert key.startswith("alertmanager:")
    peer_copy = notification(a1, peer="am-1")
    peer_copy["alerts"][0]["endsAt"] = "2025-05-01T10:04:00.000Z"  # a firing alert's endsAt moves
    assert send(peer_copy).json() == {"eventProcessed": False, "source": "alertmanager", "executions": [],
                                      "duplicate": True, "dedupeKey": key}
    assert len(executions(served)) == 1

    a2 = alert("77d0e5b3c2a19f40", pod="reviews-v2-1")
    assert send(notification(a1, a2)).status_code == 202  # a new alert in the group: a new event
    assert send(notification(a2, a1)).json()["duplicate"] is True  # the same alerts in another order
    ended = "2025-05-01T10:09:00.000Z"
    resolved = notification(alert(a1["fingerprint"], pod="reviews-v2-0", ends=ended),
                            alert(a2["fingerprint"], pod="reviews-v2-1", ends=ended))
    assert send(resolved).status_code == 202
    assert send(resolved).json()["duplicate"] is True
    again = alert(a1["fingerprint"], pod="reviews-v2-0", starts="2025-05-01T11:00:00.000Z")
    assert send(notification(again)).status_code == 202  # fired again: a new startsAt
    started = executions(served)
    assert sorted(e["trigger"]["payload"]["status"] for e in started) == ["firing", "firing", "firing", "resolved"]
    assert len({e["id"] for e in started}) == 4


def test_the_signature_algorithm_must_be_the_headers(served: Served) -> None:
    served.operator().post("/api/v1/pipelines", json=pipeline("signed", {"secret": SECRET}))
    body = b'{"ref": "main"}'
    for header in ("X-Hub-Signature-256", "X-Graylane-Signature"):
        resp = hook(served, body, **{header: sign(body, algo="sha1")})
        assert resp.status_code == 403, resp.text
    assert executions(served) == []


def test_a_refusal_names_no_pipeline(served: Served) -> None:
    served.operator().post("/api/v1/pipelines", json=pipeline("secret-deploy-prod", {"secret": SECRET}))
    resp = hook(served, b'{"ref": "main"}', **{"X-Hub-Signature-256": "sha256=00"})
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == "webhook refused: signature does not match (or is missing)"
    assert "secret-deploy-prod" not in resp.text and "ci/" not in resp.text
    assert executions(served) == []


def test_a_signed_timestamp_must_be_recent(served: Served) -> None:
    served.operator().post("/api/v1/pipelines", json=pipeline("signed", {"secret": SECRET}))
    body = b'{"ref": "main"}'
    stale = str(int(time.time()) - 3600)
    resp = hook(served, body, **{"X-Graylane-Timestamp": stale,
                                 "X-Hub-Signature-256": sign(body, prefix=f"{stale}.".encode())})
    assert resp.status_code == 403 and "outside the accepted window" in resp.json()["error"]["message"]
    now = str(int(time.time()))
    unsigned_stamp = hook(served, body, **{"X-Graylane-Timestamp": now, "X-Hub-Signature-256": sign(body)})
    assert unsigned_stamp.status_code == 403  # the timestamp must be covered by the signature
    assert executions(served) == []
    signed = sign(body, prefix=f"{now}.".encode())
    ok = hook(served, body, **{"X-Graylane-Timestamp": now, "X-Hub-Signature-256": signed})
    assert ok.status_code == 202, ok.text


def test_deliveries_older_than_the_retention_are_forgotten(served: Served) -> None:
    """The replay guard does not grow forever: a delivery older than 30 days is pruned (at most hourly, when a
    new delivery arrives) and its id would start a run again; recent ones still refuse replays."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from graylane.pipelines.triggers import _pruned, webhook_deliveries

    served.operator().post("/api/v1/pipelines", json=pipeline("signed", {"secret": SECRET}))
    body = json.dumps({"ref": "main"}).encode()
    for delivery in ("old", "recent"):
        assert hook(served, body, **{"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": delivery}) \
            .status_code == 202
    engine = served.store.engine
    with engine.begin() as conn:  # the first one was received 31 days ago
        conn.execute(webhook_deliveries.update().where(webhook_deliveries.c.delivery_key == "delivery:old")
                     .values(received_at=datetime.now(UTC) - timedelta(days=31)))
    _pruned.pop(str(engine.url), None)  # an hour has passed since the last pruning
    assert hook(served, body, **{"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "new"}).status_code == 202
    with engine.connect() as conn:
        kept = {r[0] for r in conn.execute(sa.select(webhook_deliveries.c.delivery_key))}
    assert kept == {"delivery:recent", "delivery:new"}
    assert hook(served, body, **{"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "recent"}) \
        .json()["duplicate"] is True
