"""Every Istio admission message: one input that triggers it and one that does not."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graylane.resources.document import Document
from graylane.resources.finding import Severity
from graylane.resources.validate import admission_errors, analyze

DEST = {"destination": {"host": "reviews", "subset": "v1"}}


def vs(**spec: Any) -> dict[str, Any]:
    spec.setdefault("hosts", ["reviews"])
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": spec,
    }


def http(**rule: Any) -> dict[str, Any]:
    """A VirtualService with one http rule (`route` to reviews v1 unless given)."""
    rule.setdefault("route", [DEST])
    return vs(http=[{k: v for k, v in rule.items() if v is not None}])


def dr(**spec: Any) -> dict[str, Any]:
    spec.setdefault("host", "reviews")
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": spec,
    }


def gw(servers: Any, name: str = "bookinfo-gateway") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers},
    }


def se(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "ext"}, "spec": spec}


def deploy(selector: dict[str, str], labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "reviews-v1"},
        "spec": {
            "selector": {"matchLabels": selector},
            **spec,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "reviews:1"}]},
            },
        },
    }


def svc(ports: list[dict[str, Any]], name: str = "reviews") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "reviews"}, "ports": ports},
    }


def local_image(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "graylane.io/v1alpha1", "kind": "LocalImage", "metadata": {"name": "reviews"}, "spec": spec}


def ef(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "ef"},
        "spec": spec,
    }


def containers(*items: dict[str, Any]) -> dict[str, Any]:
    body = deploy({"app": "r"}, {"app": "r"})
    body["spec"]["template"]["spec"]["containers"] = list(items)
    return body


SERVER = {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
SUBSET = {"name": "v1", "labels": {"version": "v1"}}

# (id, message, body that triggers it, body that does not)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("no-routes", "http, tcp or tls must be provided in virtual service", vs(), http()),
    (
        "mesh-wildcard",
        "wildcard host * is not allowed for virtual services bound to the mesh gateway",
        vs(hosts=["*"], http=[{"route": [DEST]}]),
        vs(hosts=["*"], gateways=["bookinfo-gateway"], http=[{"route": [DEST]}]),
    ),
    (
        "duplicate-hosts",
        "duplicate hosts in virtual service: reviews & reviews",
        vs(hosts=["reviews", "reviews"], http=[{"route": [DEST]}]),
        vs(hosts=["reviews", "ratings"], http=[{"route": [DEST]}]),
    ),
    (
        "duplicate-wildcard-hosts",
        "duplicate hosts in virtual service: *.example.com & shop.example.com",
        vs(hosts=["*.example.com", "shop.example.com"], gateways=["gw"], http=[{"route": [DEST]}]),
        vs(hosts=["*.example.com", "shop.example.org"], gateways=["gw"], http=[{"route": [DEST]}]),
    ),
    (
        "delegate-gateways",
        "delegate virtual service must have no gateways specified",
        vs(hosts=[], gateways=["gw"], http=[{"route": [DEST]}]),
        vs(hosts=[], http=[{"route": [DEST]}]),
    ),
    (
        "delegate-tcp",
        "delegate virtual service must have no tcp route specified",
        vs(hosts=[], tcp=[{"route": [DEST]}]),
        vs(tcp=[{"route": [DEST]}]),
    ),
    (
        "delegate-tls",
        "delegate virtual service must have no tls route specified",
        vs(hosts=[], tls=[{"match": [{"sniHosts": ["reviews"]}], "route": [DEST]}]),
        vs(tls=[{"match": [{"sniHosts": ["reviews"]}], "route": [DEST]}]),
    ),
    (
        "action-required",
        "HTTP route, redirect or direct_response is required",
        http(route=[], match=[{"uri": {"prefix": "/"}}]),
        http(),
    ),
    (
        "route-and-redirect",
        "HTTP route cannot contain both route and redirect",
        http(redirect={"uri": "/new"}),
        http(route=[], redirect={"uri": "/new"}),
    ),
    (
        "fault-and-redirect",
        "HTTP route cannot contain both fault and redirect",
        http(route=[], redirect={"uri": "/new"}, fault={"abort": {"httpStatus": 500, "percentage": {"value": 1}}}),
        http(fault={"abort": {"httpStatus": 500, "percentage": {"value": 1}}}),
    ),
    (
        "rewrite-and-redirect",
        "HTTP route rule cannot contain both rewrite and redirect",
        http(route=[], redirect={"uri": "/new"}, rewrite={"uri": "/x"}),
        http(rewrite={"uri": "/x"}),
    ),
    (
        "route-and-direct-response",
        "HTTP route cannot contain both route and direct_response",
        http(directResponse={"status": 503}),
        http(route=[], directResponse={"status": 503}),
    ),
    (
        "mirror-and-mirrors",
        "HTTP route cannot contain both mirror and mirrors",
        http(mirror={"host": "reviews"}, mirrors=[{"destination": {"host": "reviews"}}]),
        http(mirror={"host": "reviews"}),
    ),
    (
        "root-route",
        "root HTTP route main must not specify route",
        http(name="main", delegate={"name": "reviews-delegate"}),
        http(route=None, delegate={"name": "reviews-delegate"}),
    ),
    (
        "delegate-delegate",
        "delegate HTTP route cannot contain delegate",
        vs(hosts=[], http=[{"delegate": {"name": "x"}, "route": [DEST]}]),
        vs(hosts=[], http=[{"route": [DEST]}]),
    ),
    (
        "negative-weight",
        "weight -10 < 0",
        http(route=[{**DEST, "weight": -10}, {**DEST, "weight": 110}]),
        http(route=[{**DEST, "weight": 0}, {**DEST, "weight": 100}]),
    ),
    (
        "total-weight-zero",
        "total destination weight = 0",
        http(route=[{**DEST, "weight": 0}, {**DEST, "weight": 0}]),
        http(route=[{**DEST, "weight": 0}]),
    ),
    (
        "fault-empty",
        "HTTP fault injection must have an abort and/or a delay",
        http(fault={}),
        http(fault={"delay": {"fixedDelay": "7s", "percentage": {"value": 100}}}),
    ),
    (
        "abort-status",
        "HTTP status 700 is not in range 200-599",
        http(fault={"abort": {"httpStatus": 700}}),
        http(fault={"abort": {"httpStatus": 555}}),
    ),
    (
        "fault-percentage",
        "percentage 150 is neither 0.0, nor in range [0.0001, 100.0]",
        http(fault={"abort": {"httpStatus": 500, "percentage": {"value": 150}}}),
        http(fault={"abort": {"httpStatus": 500, "percentage": {"value": 100.0}}}),
    ),
    (
        "exponential-delay",
        "exponentialDelay not supported yet",
        http(fault={"delay": {"exponentialDelay": "1s"}}),
        http(fault={"delay": {"fixedDelay": "1s"}}),
    ),
    ("duration-min", "duration must be greater than 1ms", http(timeout="0.5ms"), http(timeout="1ms")),
    (
        "duration-precision",
        "only durations to ms precision are supported",
        http(timeout="1.0005s"),
        http(timeout="1.5s"),
    ),
    (
        "per-try-precision",
        "only durations to ms precision are supported",
        http(retries={"attempts": 2, "perTryTimeout": "100100us"}),
        http(retries={"attempts": 2, "perTryTimeout": "100ms"}),
    ),
    (
        "fixed-delay-min",
        "duration must be greater than 1ms",
        http(fault={"delay": {"fixedDelay": "0s", "percentage": {"value": 1}}}),
        http(fault={"delay": {"fixedDelay": "2m", "percentage": {"value": 1}}}),
    ),
    (
        "backoff-precision",
        "only durations to ms precision are supported",
        http(retries={"attempts": 1, "backoff": "25.5ms"}),
        http(retries={"attempts": 1, "backoff": "25ms"}),
    ),
    ("duration-syntax", "invalid duration 'ten seconds'", http(timeout="ten seconds"), http(timeout="1m30s")),
    ("attempts-negative", "attempts cannot be negative", http(retries={"attempts": -1}), http(retries={"attempts": 0})),
    (
        "retry-on",
        '"bogus" is not a valid retryOn policy',
        http(retries={"attempts": 3, "retryOn": "5xx,bogus"}),
        http(retries={"attempts": 3, "retryOn": "5xx,gateway-error,503,retriable-status-codes"}),
    ),
    (
        "retry-disabled",
        "http retry policy configured when attempts are set to 0 (disabled)",
        http(retries={"attempts": 0, "retryOn": "5xx"}),
        http(retries={"attempts": 0}),
    ),
    (
        "subset-name",
        "subset name is invalid: V_1",
        http(route=[{"destination": {"host": "reviews", "subset": "V_1"}}]),
        http(route=[{"destination": {"host": "reviews", "subset": "v-1"}}]),
    ),
    (
        "destination-star",
        "invalid destination host *",
        http(route=[{"destination": {"host": "*"}}]),
        http(route=[{"destination": {"host": "*.example.com"}}]),
    ),
    (
        "empty-prefix",
        '"uri": prefix string match should not be empty',
        http(match=[{"uri": {"prefix": ""}}]),
        http(match=[{"uri": {"prefix": "/"}}]),
    ),
    (
        "regex-backreference",
        '"uri": error parsing regexp: invalid escape sequence: \\1',
        http(match=[{"uri": {"regex": "/(a)\\1"}}]),
        http(match=[{"uri": {"regex": "/(a)+"}}]),
    ),
    (
        "regex-lookahead",
        '"headers": error parsing regexp: invalid perl operator: (?=',
        http(match=[{"headers": {"end-user": {"regex": "(?=jason).*"}}}]),
        http(match=[{"headers": {"end-user": {"regex": "jason|json"}}}]),
    ),
    (
        "regex-too-long",
        '"queryParams": regex is too large, max length allowed is 1024',
        http(match=[{"queryParams": {"v": {"regex": "a" * 1025}}}]),
        http(match=[{"queryParams": {"v": {"regex": "a" * 1024}}}]),
    ),
    (
        "regex-empty",
        '"uri": regex string match should not be empty',
        http(match=[{"uri": {"regex": ""}}]),
        http(match=[{"uri": {"exact": ""}}]),
    ),
    (
        "redirect-code",
        "200 is not a valid redirect code, must be 3xx",
        http(route=[], redirect={"uri": "/x", "redirectCode": 200}),
        http(route=[], redirect={"uri": "/x", "redirectCode": 308}),
    ),
    (
        "redirect-empty",
        "redirect must specify URI, authority, scheme, or port",
        http(route=[], redirect={"redirectCode": 301}),
        http(route=[], redirect={"authority": "example.com"}),
    ),
    (
        "mirror-percentage",
        "mirror_percentage must have a max value of 100 (it has 150.000000)",
        http(mirror={"host": "reviews"}, mirrorPercentage={"value": 150}),
        http(mirror={"host": "reviews"}, mirrorPercentage={"value": 100}),
    ),
    (
        "mirrors-percentage",
        "mirror percentage must have a max value of 100 (it has 101.500000)",
        http(mirrors=[{"destination": {"host": "reviews"}, "percentage": {"value": 101.5}}]),
        http(mirrors=[{"destination": {"host": "reviews"}, "percentage": {"value": 5}}]),
    ),
    (
        "rewrite-both",
        "rewrite may only contain one of URI or UriRegexRewrite",
        http(rewrite={"uri": "/v2", "uriRegexRewrite": {"match": "^/v1", "rewrite": "/v2"}}),
        http(rewrite={"uriRegexRewrite": {"match": "^/v1(/.*)", "rewrite": "/v2\\1"}}),
    ),
    (
        "rewrite-regex",
        '"HTTPRewrite.UriRegexRewrite.Match": error parsing regexp',
        http(rewrite={"uriRegexRewrite": {"match": "(?<=v1)/x", "rewrite": "/y"}}),
        http(rewrite={"uriRegexRewrite": {"match": "v1/x", "rewrite": "/y"}}),
    ),
    (
        "direct-status",
        "HTTP status 99 is not in range 200-599",
        http(route=[], directResponse={"status": 99}),
        http(route=[], directResponse={"status": 200, "body": {"string": "ok"}}),
    ),
    ("tcp-route", "TCP route is required", vs(tcp=[{"match": [{"port": 3306}]}]), vs(tcp=[{"route": [DEST]}])),
    (
        "tls-sni",
        "TLS match must have at least one SNI host",
        vs(tls=[{"match": [{"port": 443}], "route": [DEST]}]),
        vs(tls=[{"match": [{"sniHosts": ["reviews"]}], "route": [DEST]}]),
    ),
    ("dr-subset-empty", "subset name cannot be empty", dr(subsets=[{"name": ""}]), dr(subsets=[SUBSET])),
    (
        "dr-subset-invalid",
        "subset name is invalid: v1.0",
        dr(subsets=[{"name": "v1.0"}]),
        dr(subsets=[{"name": "v1-0"}]),
    ),
    (
        "dr-subset-duplicate",
        "duplicate subset names: v1",
        dr(subsets=[SUBSET, SUBSET]),
        dr(subsets=[SUBSET, {"name": "v2", "labels": {"version": "v2"}}]),
    ),
    (
        "dr-empty-policy",
        "traffic policy must have at least one field",
        dr(trafficPolicy={}),
        dr(trafficPolicy={"loadBalancer": {"simple": "RANDOM"}}),
    ),
    (
        "dr-cookie-name",
        "name required for HttpCookie",
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"httpCookie": {"ttl": "0s"}}}}),
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"}}}}),
    ),
    (
        "dr-ejection-percent",
        "percentage 120 is not in range 0..100",
        dr(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 120}}),
        dr(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 100, "consecutive5xxErrors": 1}}),
    ),
    (
        "dr-interval",
        "duration must be greater than 1ms",
        dr(trafficPolicy={"outlierDetection": {"interval": "0s"}}),
        dr(trafficPolicy={"outlierDetection": {"interval": "1s"}}),
    ),
    (
        "dr-negative-pool",
        "http1MaxPendingRequests must be non-negative",
        dr(trafficPolicy={"connectionPool": {"http": {"http1MaxPendingRequests": -1}}}),
        dr(trafficPolicy={"connectionPool": {"http": {"http1MaxPendingRequests": 1}}}),
    ),
    ("gw-servers", "gateway must have at least one server", gw([]), gw([SERVER])),
    ("gw-hosts", "server config must contain at least one host", gw([{**SERVER, "hosts": []}]), gw([SERVER])),
    (
        "gw-port-names",
        "port names in servers must be unique: duplicate name http",
        gw([SERVER, {**SERVER, "port": {"number": 9090, "name": "http", "protocol": "HTTP"}}]),
        gw([SERVER, {**SERVER, "port": {"number": 9090, "name": "http-2", "protocol": "HTTP"}}]),
    ),
    (
        "gw-tls",
        "server must have TLS settings for HTTPS/TLS protocols",
        gw([{**SERVER, "port": {"number": 443, "name": "https", "protocol": "HTTPS"}}]),
        gw(
            [
                {
                    **SERVER,
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "tls": {"mode": "SIMPLE", "credentialName": "cert"},
                }
            ]
        ),
    ),
    ("gw-name", 'invalid gateway name: "bookinfo.gateway"', gw([SERVER], name="bookinfo.gateway"), gw([SERVER])),
    (
        "se-hosts",
        "service entry must have at least one host",
        se(ports=[{"number": 80, "name": "http"}]),
        se(hosts=["www.googleapis.com"], ports=[{"number": 80, "name": "http"}]),
    ),
    (
        "se-ports",
        "service entry port 80 already defined",
        se(hosts=["a.example.com"], ports=[{"number": 80, "name": "http"}, {"number": 80, "name": "http-2"}]),
        se(hosts=["a.example.com"], ports=[{"number": 80, "name": "http"}, {"number": 443, "name": "https"}]),
    ),
    (
        "deployment-selector",
        "`selector` does not match template `labels`",
        deploy({"app": "reviews"}, {"app": "ratings"}),
        deploy({"app": "reviews"}, {"app": "reviews", "version": "v1"}),
    ),
    (
        "deployment-replicas",
        "must be greater than or equal to 0",
        deploy({"app": "r"}, {"app": "r"}, replicas=-1),
        deploy({"app": "r"}, {"app": "r"}, replicas=0),
    ),
    ("service-port", "must be between 1 and 65535, inclusive", svc([{"port": 70000}]), svc([{"port": 9080}])),
    (
        "service-port-names",
        "every port of a multi-port service needs a name",
        svc([{"port": 9080}, {"port": 9090}]),
        svc([{"port": 9080, "name": "http"}, {"port": 9090, "name": "grpc"}]),
    ),
    (
        "local-image",
        "command or args is required",
        local_image(image="*/examples-bookinfo-*"),
        local_image(image="*/examples-bookinfo-*", command=["python", "-m", "app"]),
    ),
]


def _messages(body: dict[str, Any]) -> list[str]:
    return [f.detail or f.message for f in admission_errors([Document(copy.deepcopy(body))])]


@pytest.mark.parametrize(("message", "bad", "good"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_admission_message(message: str, bad: dict[str, Any], good: dict[str, Any]) -> None:
    assert any(message in m for m in _messages(bad)), _messages(bad)
    assert not any(message in m for m in _messages(good)), _messages(good)


def test_istio_admission_errors_carry_ist0106_and_field():
    [finding] = admission_errors([Document(http(route=[{**DEST, "weight": -1}, {**DEST, "weight": 101}]))])
    assert finding.code == "IST0106"
    assert finding.severity is Severity.ERROR
    assert finding.message == "Schema validation error: weight -1 < 0"
    assert finding.path == ("spec", "http", 0, "route", 0, "weight")


def test_abort_without_error_type_is_a_warning_not_an_error():
    doc = Document(http(fault={"abort": {"percentage": {"value": 10}}}))
    assert admission_errors([doc]) == []
    warnings = [str(f) for f in analyze([doc])]
    assert any("[IST0133]" in w and "abort configured, but error type not set" in w for w in warnings)


@given(st.lists(st.integers(min_value=-5, max_value=150), min_size=2, max_size=5))
def test_weights_rules_hold_for_any_split(weights: list[int]) -> None:
    body = http(
        route=[{"destination": {"host": "reviews", "subset": f"v{i}"}, "weight": w} for i, w in enumerate(weights)]
    )
    messages = _messages(body)
    negative = [w for w in weights if w < 0]
    assert sorted(m for m in messages if m.startswith("weight ")) == sorted(f"weight {w} < 0" for w in negative)
    assert ("total destination weight = 0" in messages) == (sum(weights) == 0)
    if not negative and sum(weights) > 0:
        gl0002 = [f for f in analyze([Document(body)]) if f.code == "GL0002"]
        assert bool(gl0002) == (sum(weights) != 100)


EF_PATCH = {"applyTo": "HTTP_FILTER", "patch": {"operation": "INSERT_BEFORE", "value": {"name": "x"}}}
PROBE_OK = {"httpGet": {"path": "/health", "port": 9080}}

# The less common admission messages: same shape as CASES.
MORE_CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("invalid-host", "invalid host re_views!", vs(hosts=["re_views!"], http=[{"route": [DEST]}]), http()),
    (
        "one-of-string-match",
        "only one of exact, prefix, regex may be set (found exact, prefix)",
        http(match=[{"uri": {"exact": "/a", "prefix": "/a"}}]),
        http(match=[{"uri": {"exact": "/a"}}]),
    ),
    (
        "header-name",
        "header name end user is not a valid header name",
        http(match=[{"headers": {"end user": {"exact": "jason"}}}]),
        http(match=[{"headers": {"end-user": {"exact": "jason"}}}]),
    ),
    (
        "header-null",
        "must be an object (got None)",
        http(match=[{"headers": {"end-user": None}}]),
        http(match=[{"headers": {"end-user": {}}}]),
    ),
    (
        "source-namespace",
        "sourceNamespace match Shop is invalid",
        http(match=[{"sourceNamespace": "Shop"}]),
        http(match=[{"sourceNamespace": "shop"}]),
    ),
    (
        "match-port",
        "port number 70000 must be in the range 1..65535",
        http(match=[{"port": 70000}]),
        http(match=[{"port": 9080}]),
    ),
    (
        "gateway-namespace",
        'invalid value for namespace: "Istio_System"',
        vs(gateways=["Istio_System/gw"], http=[{"route": [DEST]}]),
        vs(gateways=["istio-system/gw"], http=[{"route": [DEST]}]),
    ),
    (
        "gateway-empty-parts",
        "config namespace and gateway name cannot be empty",
        vs(gateways=["/gw"], http=[{"route": [DEST]}]),
        vs(gateways=["ns/gw"], http=[{"route": [DEST]}]),
    ),
    (
        "rewrite-empty",
        "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
        http(rewrite={}),
        http(rewrite={"authority": "reviews.internal"}),
    ),
    (
        "regex-rewrite-fields",
        "UriRegexRewrite requires both Rewrite and Match fields to be specified",
        http(rewrite={"uriRegexRewrite": {"match": "^/a"}}),
        http(rewrite={"uriRegexRewrite": {"match": "^/a", "rewrite": "/b"}}),
    ),
    (
        "redirect-scheme",
        'invalid redirect scheme, must be "http" or "https"',
        http(route=[], redirect={"uri": "/x", "scheme": "ftp"}),
        http(route=[], redirect={"uri": "/x", "scheme": "https"}),
    ),
    (
        "redirect-port-and-derive",
        "only one of port or derivePort may be set",
        http(route=[], redirect={"port": 8443, "derivePort": "FROM_REQUEST_PORT"}),
        http(route=[], redirect={"port": 8443}),
    ),
    (
        "direct-body-size",
        "large direct_responses may impact control plane performance, must be less than 1MB",
        http(route=[], directResponse={"status": 200, "body": {"string": "x" * (1024 * 1024 + 1)}}),
        http(route=[], directResponse={"status": 200, "body": {"string": "x" * 1024}}),
    ),
    (
        "mirror-percent",
        "mirror_percent must have a max value of 100 (it has 101)",
        http(mirror={"host": "reviews"}, mirrorPercent=101),
        http(mirror={"host": "reviews"}, mirrorPercent=100),
    ),
    (
        "mirror-percentage-min",
        "mirror_percentage must have a min value of 0 (it has -1.000000)",
        http(mirror={"host": "reviews"}, mirrorPercentage={"value": -1}),
        http(mirror={"host": "reviews"}, mirrorPercentage={"value": 0}),
    ),
    (
        "delay-percent",
        "percentage 101 is not in range 0..100",
        http(fault={"delay": {"fixedDelay": "1s", "percent": 101}}),
        http(fault={"delay": {"fixedDelay": "1s", "percent": 100}}),
    ),
    (
        "http2-abort",
        "HTTP/2 abort fault injection not supported yet",
        http(fault={"abort": {"http2Error": "CANCEL"}}),
        http(fault={"abort": {"grpcStatus": "UNAVAILABLE"}}),
    ),
    (
        "cors-origin",
        "'' is not a valid match type for CORS allow origins",
        http(corsPolicy={"allowOrigins": [{"exact": ""}]}),
        http(corsPolicy={"allowOrigins": [{"exact": "https://a.b"}]}),
    ),
    (
        "cors-regex",
        '"corsPolicy.allowOrigins": error parsing regexp',
        http(corsPolicy={"allowOrigins": [{"regex": "(?!x)"}]}),
        http(corsPolicy={"allowOrigins": [{"regex": "https://.*"}]}),
    ),
    (
        "cors-max-age",
        "max_age duration is accurate only to seconds precision",
        http(corsPolicy={"maxAge": "1.5s"}),
        http(corsPolicy={"maxAge": "24h"}),
    ),
    (
        "tls-match",
        "TLS route must have at least one match condition",
        vs(tls=[{"route": [DEST]}]),
        vs(tls=[{"match": [{"sniHosts": ["reviews"]}], "route": [DEST]}]),
    ),
    (
        "tls-route",
        "TLS route is required",
        vs(tls=[{"match": [{"sniHosts": ["reviews"]}]}]),
        vs(tls=[{"match": [{"sniHosts": ["reviews"]}], "route": [DEST]}]),
    ),
    (
        "root-redirect",
        "root HTTP route main must not specify redirect",
        http(name="main", route=None, delegate={"name": "d"}, redirect={"uri": "/x"}),
        http(name="main", route=None, delegate={"name": "d"}),
    ),
    ("dr-host", "invalid host *: must be a DNS name", dr(host="*"), dr(host="*.example.com")),
    (
        "dr-lb-oneof",
        "only one of simple or consistentHash may be set",
        dr(trafficPolicy={"loadBalancer": {"simple": "RANDOM", "consistentHash": {"useSourceIp": True}}}),
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"useSourceIp": True}}}),
    ),
    (
        "dr-hash-key",
        "only one hash key may be set (found httpHeaderName, useSourceIp)",
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user", "useSourceIp": True}}}),
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}),
    ),
    (
        "dr-ring-and-maglev",
        "only one of ringHash or maglev may be set",
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"useSourceIp": True, "ringHash": {}, "maglev": {}}}}),
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"useSourceIp": True, "maglev": {}}}}),
    ),
    (
        "dr-maglev-prime",
        "table size must be a prime number",
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65536}}}}),
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65537}}}}),
    ),
    (
        "dr-port-level-port",
        "portTrafficPolicy must have valid port",
        dr(trafficPolicy={"portLevelSettings": [{"loadBalancer": {"simple": "RANDOM"}}]}),
        dr(trafficPolicy={"portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "RANDOM"}}]}),
    ),
    (
        "dr-port-level-empty",
        "port traffic policy must have at least one field",
        dr(trafficPolicy={"portLevelSettings": [{"port": {"number": 9080}}]}),
        dr(trafficPolicy={"portLevelSettings": [{"port": {"number": 9080}, "tls": {"mode": "DISABLE"}}]}),
    ),
    (
        "dr-local-origin",
        "consecutive local origin failures is only relevant when split external local origin errors",
        dr(trafficPolicy={"outlierDetection": {"consecutiveLocalOriginFailures": 3}}),
        dr(
            trafficPolicy={
                "outlierDetection": {"consecutiveLocalOriginFailures": 3, "splitExternalLocalOriginErrors": True}
            }
        ),
    ),
    (
        "dr-connect-timeout",
        "only durations to ms precision are supported",
        dr(trafficPolicy={"connectionPool": {"tcp": {"connectTimeout": "10.0001s"}}}),
        dr(trafficPolicy={"connectionPool": {"tcp": {"connectTimeout": "10s"}}}),
    ),
    (
        "dr-idle-timeout-syntax",
        "invalid duration '1 hour'",
        dr(trafficPolicy={"connectionPool": {"http": {"idleTimeout": "1 hour"}}}),
        dr(trafficPolicy={"connectionPool": {"http": {"idleTimeout": "0s"}}}),
    ),
    (
        "gw-protocol",
        'invalid protocol "HTTP3"',
        gw([{**SERVER, "port": {"number": 80, "name": "http", "protocol": "HTTP3"}}]),
        gw([SERVER]),
    ),
    (
        "gw-port-name",
        "port name must be set",
        gw([{**SERVER, "port": {"number": 80, "protocol": "HTTP"}}]),
        gw([SERVER]),
    ),
    (
        "gw-host-namespace",
        'invalid namespace value "Bad_NS" in host "Bad_NS/shop.example.com"',
        gw([{**SERVER, "hosts": ["Bad_NS/shop.example.com"]}]),
        gw([{**SERVER, "hosts": ["shop/shop.example.com"]}]),
    ),
    ("se-star", "invalid host *", se(hosts=["*"]), se(hosts=["*.example.com"])),
    (
        "se-port-name",
        'service entry port name "http" already defined',
        se(hosts=["a.example.com"], ports=[{"number": 80, "name": "http"}, {"number": 81, "name": "http"}]),
        se(hosts=["a.example.com"], ports=[{"number": 80, "name": "http"}, {"number": 81, "name": "http-alt"}]),
    ),
    (
        "se-port-name-format",
        "invalid port name: HTTP",
        se(hosts=["a.example.com"], ports=[{"number": 80, "name": "HTTP"}]),
        se(hosts=["a.example.com"], ports=[{"number": 80, "name": "http"}]),
    ),
    (
        "se-none-endpoints",
        "no endpoints should be provided for resolution type none",
        se(hosts=["a.example.com"], resolution="NONE", endpoints=[{"address": "10.0.0.1"}]),
        se(hosts=["a.example.com"], resolution="STATIC", endpoints=[{"address": "10.0.0.1"}]),
    ),
    (
        "se-selector-and-endpoints",
        "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
        se(
            hosts=["a.example.com"],
            resolution="STATIC",
            workloadSelector={"labels": {"app": "a"}},
            endpoints=[{"address": "10.0.0.1"}],
        ),
        se(hosts=["a.example.com"], resolution="STATIC", workloadSelector={"labels": {"app": "a"}}),
    ),
    (
        "se-endpoint-address",
        "address is required",
        se(hosts=["a.example.com"], resolution="STATIC", endpoints=[{"labels": {"a": "b"}}]),
        se(hosts=["a.example.com"], resolution="STATIC", endpoints=[{"address": "10.0.0.1"}]),
    ),
    (
        "se-endpoint-port",
        "endpoint port 8080 is not defined by the service entry",
        se(
            hosts=["a.example.com"],
            resolution="STATIC",
            ports=[{"number": 80, "name": "http"}],
            endpoints=[{"address": "10.0.0.1", "ports": {"web": 8080}}],
        ),
        se(
            hosts=["a.example.com"],
            resolution="STATIC",
            ports=[{"number": 80, "name": "http"}],
            endpoints=[{"address": "10.0.0.1", "ports": {"http": 8080}}],
        ),
    ),
    (
        "ef-apply-to",
        "Envoy filter: missing applyTo",
        ef(configPatches=[{"patch": EF_PATCH["patch"]}]),
        ef(configPatches=[EF_PATCH]),
    ),
    (
        "ef-patch",
        "Envoy filter: missing patch",
        ef(configPatches=[{"applyTo": "HTTP_FILTER"}]),
        ef(configPatches=[EF_PATCH]),
    ),
    (
        "ef-operation",
        "Envoy filter: missing patch operation",
        ef(configPatches=[{"applyTo": "HTTP_FILTER", "patch": {"value": {}}}]),
        ef(configPatches=[EF_PATCH]),
    ),
    (
        "ef-selector-and-refs",
        "only one of targetRefs or workloadSelector can be set",
        ef(
            workloadSelector={"labels": {"app": "a"}},
            targetRefs=[{"kind": "Service", "name": "a"}],
            configPatches=[EF_PATCH],
        ),
        ef(targetRefs=[{"kind": "Service", "name": "a"}], configPatches=[EF_PATCH]),
    ),
    (
        "deployment-empty-selector",
        "empty selector is invalid for deployment",
        deploy({}, {"app": "r"}),
        deploy({"app": "r"}, {"app": "r"}),
    ),
    (
        "deployment-containers",
        "at least one container",
        {
            **deploy({"app": "r"}, {"app": "r"}),
            "spec": {
                "selector": {"matchLabels": {"app": "r"}},
                "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": []}},
            },
        },
        deploy({"app": "r"}, {"app": "r"}),
    ),
    (
        "deployment-container-names",
        'Duplicate value: "app"',
        containers({"name": "app", "image": "a"}, {"name": "app", "image": "b"}),
        containers({"name": "app", "image": "a"}, {"name": "sidecar", "image": "b"}),
    ),
    (
        "deployment-container-port",
        "must be between 1 and 65535, inclusive",
        containers({"name": "app", "ports": [{"containerPort": 0}]}),
        containers({"name": "app", "ports": [{"containerPort": 9080}]}),
    ),
    (
        "deployment-probe-handler",
        "must specify exactly one handler type",
        containers({"name": "app", "readinessProbe": {"periodSeconds": 2}}),
        containers({"name": "app", "readinessProbe": PROBE_OK}),
    ),
    (
        "service-name",
        "a DNS-1035 label must consist of lower case alphanumeric characters",
        svc([{"port": 9080}], name="9reviews"),
        svc([{"port": 9080}], name="reviews9"),
    ),
    (
        "service-duplicate-port-name",
        'Duplicate value: "http"',
        svc([{"port": 9080, "name": "http"}, {"port": 9090, "name": "http"}]),
        svc([{"port": 9080, "name": "http"}, {"port": 9090, "name": "http-2"}]),
    ),
    (
        "local-image-image",
        "must not be empty: a glob pattern",
        local_image(image="", command=["x"]),
        local_image(image="reviews*", command=["x"]),
    ),
    (
        "local-image-env",
        'invalid environment variable name "1PORT"',
        local_image(image="r*", command=["x"], env={"1PORT": "9080"}),
        local_image(image="r*", command=["x"], env={"PORT": "9080"}),
    ),
]


@pytest.mark.parametrize(("message", "bad", "good"), [pytest.param(*c[1:], id=c[0]) for c in MORE_CASES])
def test_more_admission_messages(message: str, bad: dict[str, Any], good: dict[str, Any]) -> None:
    assert any(message in m for m in _messages(bad)), _messages(bad)
    assert not any(message in m for m in _messages(good)), _messages(good)


@pytest.mark.parametrize(
    ("message", "bad", "good"),
    [
        pytest.param(
            'using legacy gatewayName format "gw.istio-system"; prefer the <namespace>/<name> format: '
            '"istio-system/gw"',
            vs(gateways=["gw.istio-system"], http=[{"route": [DEST]}]),
            vs(gateways=["istio-system/gw"], http=[{"route": [DEST]}]),
            id="legacy-gateway-name",
        ),
        pytest.param(
            'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
            http(mirror={"host": "reviews"}, mirrorPercent=5),
            http(mirror={"host": "reviews"}, mirrorPercentage={"value": 5}),
            id="mirror-percent-deprecated",
        ),
        pytest.param(
            "outlier detection consecutive errors is deprecated",
            dr(trafficPolicy={"outlierDetection": {"consecutiveErrors": 5}}),
            dr(trafficPolicy={"outlierDetection": {"consecutive5xxErrors": 5}}),
            id="consecutive-errors",
        ),
        pytest.param(
            "large direct_responses may impact control plane performance",
            http(route=[], directResponse={"status": 200, "body": {"string": "x" * (100 * 1024 + 1)}}),
            http(route=[], directResponse={"status": 200, "body": {"string": "x"}}),
            id="direct-body-warning",
        ),
        pytest.param(
            "tls settings are only used by HTTPS/TLS servers",
            gw([{**SERVER, "tls": {"mode": "SIMPLE"}}]),
            gw([{**SERVER, "tls": {"httpsRedirect": True}}]),
            id="plain-server-tls",
        ),
    ],
)
def test_validation_warnings(message: str, bad: dict[str, Any], good: dict[str, Any]) -> None:
    def warnings(body: dict[str, Any]) -> list[str]:
        return [f.message for f in analyze([Document(copy.deepcopy(body))]) if f.code == "IST0133"]

    assert any(message in w for w in warnings(bad)), warnings(bad)
    assert not any(message in w for w in warnings(good)), warnings(good)
