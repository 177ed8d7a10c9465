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
