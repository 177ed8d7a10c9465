"""One bad resource never stops the mesh, as a user sees it: `graylane up`, then apply, get, describe, status.

A resource that passes admission but cannot be compiled (a local_ratelimit EnvoyFilter without a token bucket)
is left out: `apply --wait` fails naming it, `get -o yaml` / `describe` show its Reconciled=False condition,
`status` names it, and the next change still reaches the gateway. Istio's ratelimit sample is refused at apply.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.e2e.test_local_mesh import Mesh
from tests.mesh.test_compile_isolation import RATELIMIT_NAME, RATELIMIT_SAMPLE

pytestmark = pytest.mark.timeout(240)

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: front, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""

NO_BUCKET = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: no-bucket, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          stat_prefix: http_local_rate_limiter
"""


def front(body: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [front]
  http: [{{directResponse: {{status: 200, body: {{string: {body}}}}}}}]
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    state = tmp_path_factory.mktemp("compile-isolation") / "state"
    state.mkdir()
    m = Mesh(state)
    m.up()
    try:
        yield m
    finally:
        m.cli("down", check=False)
        m.api.close()


def served(mesh: Mesh) -> str:
    resp = httpx.get(mesh.url, timeout=10, trust_env=False)
    assert resp.status_code == 200, resp.text
    return resp.text


def write(mesh: Mesh, name: str, text: str) -> str:
    path = mesh.state.parent / name
    path.write_text(text)
    return str(path)


def test_a_resource_that_cannot_be_compiled_is_named_and_the_rest_of_the_mesh_keeps_changing(mesh: Mesh) -> None:
    out = mesh.apply(GATEWAY + "---\n" + front("one"), "front.yaml")
    assert "is served by the mesh" in out
    assert served(mesh) == "one"

    # Istio's ratelimit sample: refused up front, naming the fields; nothing is stored.
    sample = write(mesh, RATELIMIT_NAME, RATELIMIT_SAMPLE)
    refused = mesh.cli("apply", "-f", sample, "--wait", check=False)
    assert refused.returncode != 0
    text = " ".join((refused.stdout + refused.stderr).split())
    assert "spec.configPatches[0].patch.value.name: HTTP filter 'envoy.ratelimit' is not supported" in text, text
    assert "nothing was applied" in text
    assert "filter-ratelimit" not in mesh.cli("get", "envoyfilters", "-A").stdout + \
        mesh.cli("get", "envoyfilters", "-A").stderr
    checked = mesh.cli("validate", "-f", sample, check=False)
    assert "applying it to the local mesh is refused" in " ".join(checked.stdout.split()), checked.stdout

    # Passes admission, cannot be compiled: `apply --wait` says which resource and why, instead of timing out.
    failed = mesh.cli("apply", "-f", write(mesh, "no-bucket.yaml", NO_BUCKET), "--wait", "--timeout", "30",
                      check=False)
    assert failed.returncode != 0, failed.stdout
    said = " ".join((failed.stdout + failed.stderr).split())
    assert "envoyfilter.networking.istio.io/no-bucket created" in said.lower() or "no-bucket created" in said, said
    assert "EnvoyFilter istio-system/no-bucket was not applied to the mesh" in said, said
    assert "local_ratelimit needs a token_bucket" in said, said
    assert "not ACKed" not in said and "within" not in said  # named at once, not a timeout

    as_yaml = mesh.cli("get", "envoyfilter", "no-bucket", "-n", "istio-system", "-o", "yaml").stdout
    assert "type: Reconciled" in as_yaml and "reason: CompileError" in as_yaml, as_yaml
    assert "status: 'False'" in as_yaml or 'status: "False"' in as_yaml, as_yaml
    described = " ".join(mesh.cli("describe", "envoyfilter", "no-bucket", "-n", "istio-system").stdout.split())
    assert "Reconciled" in described and "local_ratelimit needs a token_bucket" in described, described
    status = mesh.cli("status")
    said = " ".join((status.stdout + status.stderr).split())
    assert "1 resource left out of the mesh configuration: EnvoyFilter istio-system/no-bucket" in said, said

    # Every later change still reaches the data plane.
    out = mesh.apply(front("two"), "front.yaml")
    assert "is served by the mesh" in out
    assert served(mesh) == "two"

    # Deleting the bad resource clears the report.
    mesh.cli("delete", "envoyfilter", "no-bucket", "-n", "istio-system")
    mesh.apply(front("three"), "front.yaml")
    assert served(mesh) == "three"
    status = mesh.cli("status")
    assert "left out" not in status.stdout + status.stderr
