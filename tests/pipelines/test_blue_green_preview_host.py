"""blueGreen previewing on a second host (Argo Rollouts' previewService behind its own host): a Graylane-managed
VirtualService binds the preview host on the gateway to the new subset while everyone else stays on the active one;
the switch moves everyone and removes it; an abort removes it too. What the gateway would do with each request is
computed by `graylane route`'s explainer over the store (the proxy's own RouteTable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_release_stages import Rig, deployment, run_rig

from graylane.cli.route import explain
from graylane.errors import ValidationError
from graylane.pipelines.stages.blue_green import blue_green_steps
from graylane.pipelines.status import ExecutionStatus as S
from graylane.resources.document import ResourceKey

PREVIEW = "preview.bookinfo.example.com"
WORLD = deployment("productpage", "v1") + deployment("productpage", "v2") + """
apiVersion: v1
kind: Service
metadata: {name: productpage}
spec: {selector: {app: productpage}, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage}
spec:
  host: productpage
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage]
  http: [{route: [{destination: {host: productpage, subset: v1}}]}]
"""
STAGE = {"type": "blueGreen", "service": "productpage", "activeSubset": "v1", "previewSubset": "v2",
         "preview": {"hosts": [PREVIEW], "gateways": ["bookinfo-gateway"]}, "scaleDownDelay": 0}
PREVIEW_VS = ResourceKey("networking.istio.io", "VirtualService", "default", "productpage-preview")


def through_gateway(rig: Rig, host: str) -> tuple[str | None, str | None]:
    """(VirtualService, subset) the gateway would route `http://host/productpage` to."""
    resources = [dict(r.body) for r in rig.store.list()]
    out: dict[str, Any] = explain(resources, f"http://{host}/productpage", gateway="bookinfo-gateway")
    return out["virtualService"], (out.get("destination") or {}).get("subset")


def test_the_preview_host_reaches_the_new_version_until_the_switch(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run(STAGE)
        await rig.rollout(exe, "Paused")
        preview = rig.store.get(PREVIEW_VS)
        assert preview is not None and preview.body["spec"]["hosts"] == [PREVIEW]
        assert preview.body["metadata"]["annotations"]["graylane.io/managed-by"] == "graylane"
        assert through_gateway(rig, PREVIEW) == ("default/productpage-preview", "v2")
        assert through_gateway(rig, "bookinfo.example.com") == ("default/bookinfo", None)
        assert rig.weights("productpage") == [("v1", 100), ("v2", 0)]  # everyone else: the active version
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="dave")
        assert (await rig.done(exe)).status == S.SUCCEEDED
        assert rig.weights("productpage") == [("v2", 100)]
        assert rig.store.get(PREVIEW_VS) is None  # the preview host is gone with the switch

    run_rig(tmp_path, WORLD, test)


def test_abort_removes_the_preview_host(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run(STAGE)
        await rig.rollout(exe, "Paused")
        assert rig.store.get(PREVIEW_VS) is not None
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Abort"}, user="dave")
        done = await rig.done(exe)
        assert done.status == S.TERMINAL
        assert rig.store.get(PREVIEW_VS) is None
        assert rig.weights("productpage") == [("v1", 100), ("v2", 0)]

    run_rig(tmp_path, WORLD, test)


@pytest.mark.parametrize(("preview", "services", "message"), [
    ({"hosts": [PREVIEW]}, None, "needs `hosts` and `gateways`"),
    ({"hosts": PREVIEW, "gateways": ["gw"]}, None, "each a list of names"),
    ({"hosts": [PREVIEW], "gateways": ["gw"]}, [{"service": "a"}, {"service": "b"}], "previews one service"),
])
def test_a_preview_host_needs_hosts_gateways_and_one_service(preview: dict[str, Any], services: Any,
                                                            message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        blue_green_steps({"preview": preview, **({"services": services} if services else {})})
