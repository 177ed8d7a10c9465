"""validate(): istioctl-style lines, JSON form, and the apply gate that refuses invalid batches."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graylane.errors import ValidationError
from graylane.resources.durations import parse_duration, validate_duration
from graylane.resources.load import load_text
from graylane.resources.validate import check_apply, validate

VS_V4 = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        # the canary that was never defined
        subset: v4
"""

SERVICE_AND_RULE = """\
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""


def test_finding_renders_like_istioctl():
    docs = load_text(SERVICE_AND_RULE, "platform.yaml") + load_text(VS_V4, "networking/vs.yaml")
    assert [str(f) for f in validate(docs)] == [
        'Error [IST0101] (VirtualService default/reviews networking/vs.yaml:14) '
        'Referenced host+subset in destinationrule not found: "reviews+v4"']


def test_finding_as_json():
    docs = load_text(SERVICE_AND_RULE, "platform.yaml") + load_text(VS_V4, "networking/vs.yaml")
    [finding] = validate(docs)
    assert finding.to_dict() == {
        "severity": "Error", "code": "IST0101",
        "message": 'Referenced host+subset in destinationrule not found: "reviews+v4"',
        "path": "spec.http[0].route[0].destination.subset",
        "resource": {"group": "networking.istio.io", "kind": "VirtualService", "namespace": "default",
                     "name": "reviews"},
        "file": "networking/vs.yaml", "line": 14,
    }


BATCH = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: one}
data: {a: b}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -5
    - destination: {host: reviews, subset: v2}
      wieght: 105
"""


def test_check_apply_lists_every_admission_error_with_file_and_line():
    docs = load_text(BATCH, "batch.yaml")
    with pytest.raises(ValidationError) as exc:
        check_apply(docs)
    text = str(exc.value)
    assert "batch.yaml:16: spec.http[0].route[1].wieght: unknown field (VirtualService default/reviews)" in text
    assert text.startswith("1 validation error, nothing was applied")
    fixed = load_text(BATCH.replace("wieght", "weight"), "batch.yaml")
    with pytest.raises(ValidationError) as exc:
        check_apply(fixed)
    assert "batch.yaml:14: spec.http[0].route[0].weight: weight -5 < 0" in str(exc.value)


def test_check_apply_passes_analyzer_findings():
    # A missing subset is only an analyzer finding: a cluster accepts it (istio.md §2.7), so does apply.
    check_apply(load_text(VS_V4, "vs.yaml"))


def test_findings_are_sorted_by_file_and_line():
    docs = load_text(BATCH.replace("wieght", "weight"), "b.yaml") + load_text(VS_V4, "a.yaml")
    files_lines = [(f.doc.source.file, f.doc.line_of(f.path)) for f in validate(docs) if f.doc is not None]
    assert files_lines == sorted(files_lines)


@given(st.integers(min_value=1, max_value=10**7))
def test_whole_millisecond_durations_are_valid(ms: int):
    assert validate_duration(f"{ms}ms") is None
    assert parse_duration(f"{Decimal(ms) / 1000}s") == Decimal(ms) / 1000


@given(st.integers(min_value=1, max_value=999))
def test_sub_millisecond_parts_are_refused(us: int):
    assert validate_duration(f"1s{us}us") == "only durations to ms precision are supported"


def test_go_duration_syntax():
    assert parse_duration("1h2m3.5s") == Decimal("3723.5")
    assert validate_duration("500us") == "duration must be greater than 1ms"
    assert validate_duration("5 s") is not None


def test_a_file_that_is_not_a_resource_gets_one_clear_error():
    [finding] = validate(load_text('{"application": "bookinfo", "stages": []}', "pipeline.json"))
    assert str(finding) == "Error (pipeline.json:1) not a Kubernetes resource: apiVersion and kind are missing"


def test_api_bodies_are_named_by_position():
    from graylane.resources.document import Document, Source

    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews"}, "spec": {"ports": [{"port": 0}]}}
    with pytest.raises(ValidationError) as exc:
        check_apply([Document(body, Source("<api>", 1, 1))])
    assert "document 2: spec.ports[0].port: must be between 1 and 65535, inclusive (Service default/reviews)" in str(
        exc.value)
