"""Schema: unknown fields and wrong types name their path and line; apiVersions; typed parse()."""

from __future__ import annotations

import pytest

from graylane.errors import ValidationError
from graylane.resources.load import load_text
from graylane.resources.model import parse
from graylane.resources.model_core import Deployment
from graylane.resources.model_virtualservice import VirtualService
from graylane.resources.validate import admission_errors

VS = """\
apiVersion: networking.istio.io/{version}
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      wieght: 10
"""


def _plain(text: str, file: str = "networking/vs.yaml") -> list[str]:
    return [f.plain() for f in admission_errors(load_text(text, file))]


def test_unknown_field_names_path_and_line():
    assert _plain(VS.format(version="v1")) == ["networking/vs.yaml:17: spec.http[0].route[1].wieght: unknown field"]


@pytest.mark.parametrize("version", ["v1alpha3", "v1beta1", "v1"])
def test_every_istio_version_has_the_same_schema(version: str):
    assert _plain(VS.format(version=version).replace("wieght", "weight")) == []
    assert len(_plain(VS.format(version=version))) == 1


def test_unserved_version_is_refused():
    [line] = _plain(VS.format(version="v2").replace("wieght", "weight"))
    assert line.startswith("networking/vs.yaml:1: apiVersion: no matches for kind \"VirtualService\" in version")


@pytest.mark.parametrize(("text", "refused"), [
    ("apiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: ef}\nspec: {}\n", True),
    ("apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef}\nspec: {}\n", False),
    ("apiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: pa}\nspec: {}\n", True),
    ("apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: pa}\n"
     "spec: {portLevelMtls: {80: {mode: DISABLE}}, anything: kept}\n", False),
])
def test_istio_kinds_are_refused_only_in_versions_istios_crds_do_not_serve(text: str, refused: bool):
    lines = _plain(text)
    assert bool(lines) == refused, lines
    assert all(line.startswith("networking/vs.yaml:1: apiVersion: no matches for kind") for line in lines)


def test_wrong_type_names_the_field_and_value():
    text = VS.format(version="v1").replace("wieght: 10", "weight: ten")
    assert _plain(text) == ["networking/vs.yaml:17: spec.http[0].route[1].weight: must be an integer (got 'ten')"]


def test_missing_required_field():
    text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  subsets: []\n"
    assert _plain(text, "dr.yaml") == ["dr.yaml:4: spec.host: required field is missing"]


def test_metadata_name_is_required_and_checked():
    assert _plain("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "cm.yaml") == [
        "cm.yaml:3: metadata.name: required field is missing"]
    [line] = _plain("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n", "cm.yaml")
    assert line.startswith("cm.yaml:3: metadata.name: invalid name 'Bad_Name'")


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  labels: {app: reviews}
spec:
  replicas: 2
  revisionHistoryLimit: 3
  selector:
    matchLabels: {app: reviews, version: v1}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: reviews, version: v1}
    spec:
      serviceAccountName: bookinfo-reviews
      terminationGracePeriodSeconds: 5
      securityContext: {runAsUser: 1000}
      volumes: [{name: tmp, emptyDir: {}}]
      containers:
      - name: reviews
        image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.3
        imagePullPolicy: IfNotPresent
        args: ["--port", "9080"]
        workingDir: /srv
        env:
        - {name: LOG_DIR, value: /tmp/logs}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
        ports: [{containerPort: 9080}]
        readinessProbe:
          httpGet: {path: /health, port: 9080}
          initialDelaySeconds: 1
          periodSeconds: 2
        livenessProbe:
          tcpSocket: {port: http}
        resources: {requests: {cpu: 100m, memory: 64Mi}}
        volumeMounts: [{name: tmp, mountPath: /tmp}]
"""


def test_core_kinds_keep_fields_graylane_does_not_read():
    [doc] = load_text(DEPLOYMENT, "deploy.yaml")
    assert admission_errors([doc]) == []
    model = parse(doc)
    assert isinstance(model, Deployment)
    container = model.spec.template.spec.containers[0]
    assert container.env[2].value_from.secret_key_ref.key == "password"
    assert model.spec.strategy.rolling_update.max_surge == "25%"
    assert container.liveness_probe.tcp_socket.port == "http"
    assert model.spec.template.spec.model_extra["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_core_kinds_still_check_types_of_the_fields_they_read():
    text = DEPLOYMENT.replace("replicas: 2", "replicas: two").replace("port: 9080}", "port: true}")
    assert _plain(text, "deploy.yaml") == [
        "deploy.yaml:7: spec.replicas: must be an integer (got 'two')",
        "deploy.yaml:36: spec.template.spec.containers[0].readinessProbe.httpGet.port: "
        "must be an integer or a string (got True)",
    ]


def test_local_image_is_strict():
    text = ("apiVersion: graylane.io/v1alpha1\nkind: LocalImage\nmetadata: {name: reviews}\nspec:\n"
            "  image: '*/examples-bookinfo-reviews-*'\n  command: [python, -m, reviews]\n  env: {PORT: '9080'}\n"
            "  cwd: /srv\n")
    assert _plain(text, "li.yaml") == ["li.yaml:8: spec.cwd: unknown field"]


def test_parse_gives_typed_access_with_camel_case_fields():
    [doc] = load_text(VS.format(version="v1beta1").replace("wieght", "weight"), "vs.yaml")
    model = parse(doc)
    assert isinstance(model, VirtualService)
    assert [r.weight for r in model.spec.http[0].route] == [90, 10]
    assert model.spec.http[0].route[1].destination.subset == "v2"


def test_parse_refuses_invalid_documents_with_where():
    [doc] = load_text(VS.format(version="v1"), "vs.yaml")
    with pytest.raises(ValidationError) as exc:
        parse(doc)
    assert exc.value.where == "vs.yaml:17"
    assert "spec.http[0].route[1].wieght: unknown field" in str(exc.value)


def test_parse_returns_none_for_kinds_not_modelled():
    [doc] = load_text("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: r}\n")
    assert parse(doc) is None
    assert admission_errors([doc]) == []
