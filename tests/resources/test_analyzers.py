"""Every analyzer code: an input that triggers it and one that does not (istioctl templates)."""

from __future__ import annotations

import pytest

from graylane.resources.load import load_text
from graylane.resources.validate import analyze

BASE = """\
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
    spec: {containers: [{name: reviews, image: reviews:v1}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def vs(spec: str, name: str = "reviews") -> str:
    return f"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n{spec}"


SHOP_GATEWAY = (
    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: shop-gateway}\nspec:\n"
    '  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*/shop.example.com"]}]\n'
)


def tls_gateway(name: str, credential: str) -> str:
    return (f"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n"
            "  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n"
            f"    tls: {{mode: SIMPLE, credentialName: {credential}}}\n    hosts: [{name}.example.com]\n")


def entry(name: str, port: str, extra: str = "") -> str:
    return (f"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n"
            f"  hosts: [db.example.com]\n{extra}  ports: [{port}]\n  resolution: DNS\n")


ROUTE_V1 = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n"

# (id, expected line start + message, input that triggers it, input that does not)
CASES = [
    (
        "IST0101-host",
        'Error [IST0101] (VirtualService default/reviews in.yaml:39) Referenced host not found: "ratings"',
        vs("  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n"),
        vs(ROUTE_V1),
    ),
    (
        "IST0101-subset",
        "Error [IST0101] (VirtualService default/reviews in.yaml:39) "
        'Referenced host+subset in destinationrule not found: "reviews+v4"',
        vs(ROUTE_V1.replace("subset: v1", "subset: v4")),
        vs(ROUTE_V1),
    ),
    (
        "IST0101-mirror-host",
        "Error [IST0101] (VirtualService default/reviews in.yaml:40) "
        'Referenced mirror host not found: "reviews-shadow"',
        vs(ROUTE_V1 + "    mirror: {host: reviews-shadow}\n"),
        vs(ROUTE_V1 + "    mirror: {host: reviews}\n"),
    ),
    (
        "IST0101-mirror-subset",
        "Error [IST0101] (VirtualService default/reviews in.yaml:40) "
        'Referenced mirror+subset in destinationrule not found: "reviews+v9"',
        vs(ROUTE_V1 + "    mirror: {host: reviews, subset: v9}\n"),
        vs(ROUTE_V1 + "    mirror: {host: reviews, subset: v1}\n"),
    ),
    (
        "IST0101-gateway",
        "Error [IST0101] (VirtualService default/reviews in.yaml:36) "
        'Referenced gateway not found: "istio-system/ingress"',
        vs("  gateways: [istio-system/ingress]\n" + ROUTE_V1),
        vs("  gateways: [bookinfo-gateway, default/bookinfo-gateway, mesh]\n" + ROUTE_V1),
    ),
    (
        "IST0101-port",
        'Error [IST0101] (VirtualService default/reviews in.yaml:39) Referenced host:port not found: "reviews:9090"',
        vs(ROUTE_V1.replace("subset: v1", "subset: v1, port: {number: 9090}")),
        vs(ROUTE_V1.replace("subset: v1", "subset: v1, port: {number: 9080}")),
    ),
    (
        "IST0109",
        "Error [IST0109] (VirtualService default/reviews in.yaml:34) The VirtualServices "
        "default/reviews,default/reviews-canary associated with mesh gateway define the same host "
        "*/reviews.default.svc.cluster.local which can lead to undefined behavior.",
        vs(ROUTE_V1) + vs(ROUTE_V1, name="reviews-canary"),
        vs(ROUTE_V1) + vs("  gateways: [bookinfo-gateway]\n" + ROUTE_V1, name="reviews-canary"),
    ),
    (
        "IST0112",
        "Error [IST0112] (VirtualService default/reviews in.yaml:46) This VirtualService routes to a service "
        '"reviews" that exposes multiple ports [9080 9090].',
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  selector: {app: reviews}\n"
        "  ports: [{name: http, port: 9080}, {name: grpc, port: 9090}]\n" + vs(ROUTE_V1),
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  selector: {app: reviews}\n"
        "  ports: [{name: http, port: 9080}, {name: grpc, port: 9090}]\n"
        + vs(ROUTE_V1.replace("subset: v1", "subset: v1, port: {number: 9080}")),
    ),
    (
        "IST0128",
        "Warning [IST0128] (DestinationRule default/db in.yaml:38) DestinationRule default/db in namespace default "
        "has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: "
        "db.example.com",
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db}\nspec:\n"
        "  host: db.example.com\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n",
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db}\nspec:\n"
        "  host: db.example.com\n  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: /etc/ca.pem}\n",
    ),
    (
        "IST0129",
        "Warning [IST0129] (DestinationRule default/db in.yaml:39) DestinationRule default/db in namespace default "
        "has TLS mode set to MUTUAL but no caCertificates are set to validate server identity for host: "
        "db.example.com at port 5432",
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db}\nspec:\n"
        "  host: db.example.com\n  trafficPolicy:\n    portLevelSettings:\n"
        "    - {port: {number: 5432}, tls: {mode: MUTUAL}}\n",
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db}\nspec:\n"
        "  host: db.example.com\n  trafficPolicy:\n    portLevelSettings:\n"
        "    - {port: {number: 5432}, tls: {mode: ISTIO_MUTUAL}}\n",
    ),
    (
        "IST0130-catch-all",
        "Warning [IST0130] (VirtualService default/reviews in.yaml:40) "
        "VirtualService rule #1 not used (only the last rule can have no matches).",
        vs(ROUTE_V1 + "  - route:\n    - destination: {host: reviews}\n"),
        vs(ROUTE_V1.replace("  - route:", "  - match: [{uri: {prefix: /a}}]\n    route:")),
    ),
    (
        "IST0130-after-catch-all",
        "Warning [IST0130] (VirtualService default/reviews in.yaml:41) "
        'VirtualService rule "late" not used (route without matches defined before).',
        vs(
            ROUTE_V1 + "  - name: late\n    match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: reviews}}]\n"
        ),
        vs(
            ROUTE_V1.replace(
                "  http:\n",
                "  http:\n  - name: late\n    match: [{uri: {prefix: /a}}]\n"
                "    route: [{destination: {host: reviews}}]\n",
            )
        ),
    ),
    (
        "IST0130-all-matches-used",
        "Warning [IST0130] (VirtualService default/reviews in.yaml:40) "
        "VirtualService rule #1 not used (all matches used by prior rules).",
        vs(
            "  hosts: [reviews]\n  http:\n  - match: [{headers: {end-user: {exact: jason}}}]\n"
            "    route: [{destination: {host: reviews}}]\n  - match: [{headers: {end-user: {exact: jason}}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
        ),
        vs(
            "  hosts: [reviews]\n  http:\n  - match: [{headers: {end-user: {exact: jason}}}]\n"
            "    route: [{destination: {host: reviews}}]\n  - match: [{headers: {end-user: {exact: mary}}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
        ),
    ),
    (
        "IST0131",
        'Info [IST0131] (VirtualService default/reviews in.yaml:40) VirtualService rule #1 match "again" is '
        "not used (duplicate/overlapping match in rule #0).",
        vs(
            "  hosts: [reviews]\n  http:\n  - match: [{uri: {exact: /a}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
            "  - match: [{name: again, uri: {exact: /a}}, {uri: {exact: /b}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
        ),
        vs(
            "  hosts: [reviews]\n  http:\n  - match: [{uri: {exact: /a}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
            "  - match: [{name: again, uri: {prefix: /a}}, {uri: {exact: /b}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
        ),
    ),
    (
        "IST0132",
        "Warning [IST0132] (VirtualService default/reviews in.yaml:42) one or more host [reviews] defined in "
        "VirtualService default/reviews not found in Gateway default/shop-gateway.",
        SHOP_GATEWAY + vs("  gateways: [shop-gateway]\n" + ROUTE_V1),
        SHOP_GATEWAY
        + vs("  gateways: [shop-gateway]\n" + ROUTE_V1.replace("hosts: [reviews]", "hosts: [shop.example.com]")),
    ),
    (
        "IST0173",
        "Error [IST0173] (DestinationRule default/reviews-v2 in.yaml:38) The Subset v2 defined in the "
        "DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-v2}\nspec:\n"
        "  host: reviews\n  subsets:\n  - {name: v2, labels: {version: v2}}\n",
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-v2}\nspec:\n"
        "  host: reviews\n  subsets:\n  - {name: v2, labels: {version: v1}}\n",
    ),
    (
        "IST0174",
        "Warning [IST0174] (DestinationRule default/ratings in.yaml:36) The host ratings defined in the "
        "DestinationRule does not match any services in the mesh.",
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n"
        "  host: ratings\n",
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ratings}\nspec:\n"
        "  hosts: [ratings.default.svc.cluster.local]\n  ports: [{number: 9080, name: http}]\n  resolution: DNS\n"
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n"
        "  host: ratings\n",
    ),
    (
        "IST0101-selector",
        "Error [IST0101] (Gateway default/shop-gateway in.yaml:36) Referenced selector not found: "
        '"app=shop-gateway"',
        SHOP_GATEWAY.replace("spec:\n", "spec:\n  selector: {app: shop-gateway}\n"),
        SHOP_GATEWAY.replace("spec:\n", "spec:\n  selector: {app: shop-gateway}\n")
        + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: shop-gateway-1, labels: {app: shop-gateway}}\n",
    ),
    (
        "IST0162",
        "Warning [IST0162] (Gateway default/shop-gateway in.yaml:37) The gateway is listening on a target port "
        "(port 8080) that is not defined in the Service associated with its workload instances (Pod selector "
        "istio=ingressgateway).",
        SHOP_GATEWAY.replace("spec:\n", "spec:\n  selector: {istio: ingressgateway}\n").replace("80", "8080"),
        SHOP_GATEWAY.replace("spec:\n", "spec:\n  selector: {istio: ingressgateway}\n"),
    ),
    (
        "IST0145",
        "Error [IST0145] (Gateway default/shop-gateway in.yaml:37) Conflict with gateways default/bookinfo-gateway "
        "(workload selector istio=ingressgateway, port 80, hosts *).",
        SHOP_GATEWAY.replace("spec:\n", "spec:\n  selector: {istio: ingressgateway}\n")
        .replace("*/shop.example.com", "*"),
        SHOP_GATEWAY.replace("spec:\n", "spec:\n  selector: {istio: ingressgateway}\n"),
    ),
    (
        "IST0138",
        "Warning [IST0138] (Gateway default/a in.yaml:34) Duplicate certificate in multiple gateways "
        "[default/a default/b] may cause 404s if clients re-use HTTP2 connections.",
        tls_gateway("a", "shared") + tls_gateway("b", "shared"),
        tls_gateway("a", "shared") + tls_gateway("b", "other"),
    ),
    (
        "IST0134",
        "Warning [IST0134] (ServiceEntry default/db in.yaml:37) ServiceEntry addresses are required for this "
        "protocol.",
        entry("db", "{number: 5432, name: tcp, protocol: tcp}"),
        entry("db", "{number: 5432, name: tcp, protocol: TCP}", "  addresses: [240.0.0.1]\n")
        + entry("web", "{number: 443, name: https, protocol: HTTPS}"),
    ),
    (
        "IST0177",
        "Warning [IST0177] (ServiceEntry default/db-http in.yaml:42) Multiple ServiceEntries (default/db-http, "
        'default/db-https) define the same host "db.example.com" and port 8443 with conflicting protocols (HTTP, '
        "HTTPS).",
        entry("db-https", "{number: 8443, name: https, protocol: HTTPS}")
        + entry("db-http", "{number: 8443, name: http, protocol: HTTP}"),
        entry("db-https", "{number: 8443, name: https, protocol: HTTPS}")
        + entry("db-http", "{number: 8443, name: https, protocol: https}"),
    ),
    (
        "GL0001",
        "Warning [GL0001] (HorizontalPodAutoscaler default/reviews in.yaml:32) the local target does not act "
        "on this kind (autoscaling/v2)",
        "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: reviews}\n",
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: reviews}\ndata: {a: b}\n",
    ),
    (
        "GL0002",
        "Warning [GL0002] (VirtualService default/reviews in.yaml:38) route weights sum to 70, not 100",
        vs(
            "  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 50}\n"
            "    - {destination: {host: reviews, subset: v1}, weight: 20}\n"
        ),
        vs(
            "  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 80}\n"
            "    - {destination: {host: reviews, subset: v1}, weight: 20}\n"
        ),
    ),
]


def _lines(extra: str) -> list[str]:
    return [str(f) for f in analyze(load_text(BASE + extra, "in.yaml"))]


def test_base_is_clean():
    assert _lines("") == []


@pytest.mark.parametrize(("expected", "bad", "good"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_analyzer(expected: str, bad: str, good: str):
    code = expected.split("[", 1)[1].split("]", 1)[0]
    assert any(line.startswith(expected) for line in _lines(bad)), _lines(bad)
    assert not any(f"[{code}]" in line for line in _lines(good)), _lines(good)


DR_V2 = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews"},
    "spec": {
        "host": "reviews",
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
    },
}
DEPLOY_V2 = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "reviews-v2"},
    "spec": {
        "selector": {"matchLabels": {"app": "reviews", "version": "v2"}},
        "template": {
            "metadata": {"labels": {"app": "reviews", "version": "v2"}},
            "spec": {"containers": [{"name": "r", "image": "r:2"}]},
        },
    },
}


def test_context_from_the_store_answers_references():
    route_v2 = vs(ROUTE_V1.replace("subset: v1", "subset: v2"))
    docs = load_text(route_v2, "vs.yaml")
    alone = [str(f) for f in analyze(docs)]
    assert any('Referenced host not found: "reviews"' in line for line in alone)
    [base_svc, _, _, _] = load_text(BASE)
    context = [base_svc.body, DR_V2, DEPLOY_V2]
    assert [str(f) for f in analyze(docs, context=context)] == []


def test_input_wins_over_context_for_the_same_key():
    docs = load_text(BASE + vs(ROUTE_V1.replace("subset: v1", "subset: v2")), "in.yaml")
    # The store still has a DestinationRule with v2, but the input replaces it with one that has only v1.
    lines = [str(f) for f in analyze(docs, context=[DR_V2, DEPLOY_V2])]
    assert any('"reviews+v2"' in line for line in lines)


def test_subset_backed_only_by_zero_replicas_selects_no_pods():
    scaled_down = BASE.replace(
        "metadata: {name: reviews-v1}\nspec:\n", "metadata: {name: reviews-v1}\nspec:\n  replicas: 0\n"
    )
    assert any("[IST0173]" in str(f) for f in analyze(load_text(scaled_down, "in.yaml")))


def test_findings_are_never_reported_on_context_documents():
    context = [DR_V2]  # its v2 subset selects no pods, but it is not part of the input
    assert not any(f.code == "IST0173" for f in analyze(load_text(BASE, "in.yaml"), context=context))


def _service(ports: str, extra: str = "") -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: shop}}\nspec:\n{extra}  ports: {ports}\n"


@pytest.mark.parametrize("ports", [
    "[{name: http-web, port: 80}]", "[{name: GRPC-Web-x, port: 80}]", "[{name: web, appProtocol: http, port: 80}]",
    "[{name: web, appProtocol: kubernetes.io/h2c, port: 80}]", "[{name: dns, port: 5353, protocol: UDP}]",
    "[{port: 3306}]", "[{name: mysql, port: 3307}]",
])
def test_port_names_istio_reads_a_protocol_from(ports: str) -> None:
    assert not any("[IST0118]" in line or "[IST0150]" in line for line in _lines(_service(ports)))


def test_port_names_istio_cannot_read() -> None:
    lines = _lines(_service("[{name: web, port: 80, targetPort: 8080}, {name: http, appProtocol: web, port: 81}]"))
    assert [line.split(") ", 1)[1] for line in lines if "[IST0118]" in line] == [
        "Port name web (port: 80, targetPort: 8080) doesn't follow the naming convention of Istio port.",
        "Port name http (port: 81, targetPort: 81) doesn't follow the naming convention of Istio port."]
    external = _lines(_service("[{name: tcp, port: 443}, {name: https, port: 8443}]", "  type: ExternalName\n"))
    assert [line.split(" ", 3)[:2] for line in external if "[IST0150]" in line] == [["Warning", "[IST0150]"]]


def test_a_known_ingress_gateway_service_replaces_the_assumed_one() -> None:
    ingress = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
               "spec": {"selector": {"istio": "ingressgateway"},
                        "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ingress-1", "namespace": "istio-system",
                                                             "labels": {"istio": "ingressgateway"}}}
    gateway = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
               "  selector: {istio: ingressgateway}\n  servers:\n"
               '  - {port: {number: 80, name: a, protocol: HTTP}, hosts: ["*"]}\n'
               '  - {port: {number: 8080, name: b, protocol: HTTP}, hosts: ["*"]}\n'
               '  - {port: {number: 31400, name: c, protocol: TCP}, hosts: ["*"]}\n')
    docs = load_text(gateway, "gw.yaml")
    assert [f.code for f in analyze(docs) if f.code == "IST0162"] == ["IST0162"]  # 8080: not on the assumed one
    lines = [str(f) for f in analyze(docs, context=[ingress, pod]) if f.code == "IST0162"]
    assert len(lines) == 1 and "(port 31400)" in lines[0], lines
    lines = [str(f) for f in analyze(docs, context=[ingress]) if f.code == "IST0101"]
    assert len(lines) == 1 and 'Referenced selector not found: "istio=ingressgateway"' in lines[0], lines


def test_the_egress_gateway_of_istio_demo_profile_is_assumed_as_the_local_gateway_serves_it() -> None:
    egress = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: istio-egressgateway}\nspec:\n"
              "  selector: {istio: egressgateway}\n  servers:\n"
              "  - {port: {number: 80, name: http, protocol: HTTP}, hosts: [edition.cnn.com]}\n"
              "  - {port: {number: 443, name: tls, protocol: TLS}, hosts: [a.com], tls: {mode: PASSTHROUGH}}\n"
              "  - {port: {number: 9443, name: other, protocol: TLS}, hosts: [x.com], tls: {mode: PASSTHROUGH}}\n")
    docs = load_text(egress, "egress.yaml")
    lines = [str(f) for f in analyze(docs) if f.code in ("IST0101", "IST0162")]
    assert len(lines) == 1 and "[IST0162]" in lines[0] and "(port 9443)" in lines[0], lines
    known = {"apiVersion": "v1", "kind": "Service",  # a cluster's own egress Service replaces the assumed one
             "metadata": {"name": "istio-egressgateway", "namespace": "istio-system"},
             "spec": {"selector": {"istio": "egressgateway"}, "ports": [{"name": "http2", "port": 80}]}}
    lines = [str(f) for f in analyze(docs, context=[known]) if f.code == "IST0101"]
    assert len(lines) == 1 and 'Referenced selector not found: "istio=egressgateway"' in lines[0], lines


def test_a_backend_ref_to_the_service_istiod_generates_for_a_gateway_exists_with_the_gateway() -> None:
    route = ("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: to-egress}\nspec:\n"
             "  rules: [{backendRefs: [{name: cnn-egress-gateway-istio, port: 80}]}]\n")
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "cnn-egress-gateway", "namespace": "default"},
               "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}
    docs = load_text(route, "route.yaml")
    assert [f.code for f in analyze(docs, context=[gateway])] == []
    lines = [str(f) for f in analyze(docs)]
    assert len(lines) == 1 and 'backendRef Service not found: "default/cnn-egress-gateway-istio"' in lines[0], lines
