"""Alertmanager webhook notifications (version "4") as Alertmanager sends them, for the trigger tests."""

from __future__ import annotations

from typing import Any

STARTED = "2025-05-01T10:00:00.000Z"
NOT_ENDED = "0001-01-01T00:00:00Z"


def alert(fingerprint: str, *, pod: str, starts: str = STARTED, ends: str | None = None) -> dict[str, Any]:
    """One alert of the group: firing, or resolved when `ends` is given."""
    return {"status": "resolved" if ends else "firing",
            "labels": {"alertname": "ReviewsCanaryErrors", "service": "reviews", "pod": pod, "severity": "page"},
            "annotations": {"summary": "reviews v2 answers 5xx"}, "startsAt": starts, "endsAt": ends or NOT_ENDED,
            "generatorURL": "http://prometheus:9090/graph?g0.expr=...", "fingerprint": fingerprint}


def notification(*alerts: dict[str, Any], peer: str = "am-0") -> dict[str, Any]:
    """The webhook body of one notification of the ReviewsCanaryErrors group, sent by Alertmanager `peer`."""
    firing = any(a["status"] == "firing" for a in alerts)
    return {"version": "4", "receiver": "graylane", "status": "firing" if firing else "resolved",
            "groupKey": '{}/{severity="page"}:{alertname="ReviewsCanaryErrors", service="reviews"}',
            "truncatedAlerts": 0, "groupLabels": {"alertname": "ReviewsCanaryErrors", "service": "reviews"},
            "commonLabels": {"alertname": "ReviewsCanaryErrors", "service": "reviews", "severity": "page"},
            "commonAnnotations": {"summary": "reviews v2 answers 5xx"},
            "externalURL": f"http://{peer}.alertmanager:9093", "alerts": list(alerts)}
