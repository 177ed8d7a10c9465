"""Configurations written as Istio's documentation writes them pass the schema and admission unchanged."""

from __future__ import annotations

from graylane.resources.load import load_text
from graylane.resources.model import parse
from graylane.resources.validate import admission_errors

EXAMPLES = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-route, namespace: prod}
spec:
  hosts: [reviews.prod.svc.cluster.local]
  gateways: [mesh, istio-system/ingress]
  exportTo: ["."]
  http:
  - name: reviews-v2-routes
    match:
    - name: v2-users
      uri: {prefix: /wpcatalog}
      headers: {end-user: {exact: jason}, x-canary: {}}
      withoutHeaders: {x-debug: {regex: "^(on|true)$"}}
      queryParams: {lang: {exact: en}}
      ignoreUriCase: true
      method: {exact: GET}
      authority: {prefix: reviews}
      scheme: {exact: https}
      port: 9080
      sourceLabels: {app: productpage}
      sourceNamespace: prod
      gateways: [mesh]
    - uri: {regex: "^/consumercatalog/[0-9]+$"}
    rewrite: {uri: /newcatalog, authority: reviews.internal}
    route:
    - destination: {host: reviews.prod.svc.cluster.local, subset: v2, port: {number: 9080}}
      weight: 75
      headers:
        request: {set: {x-canary: "true"}}
        response: {add: {x-served-by: v2}, remove: [x-internal]}
    - destination: {host: reviews.prod.svc.cluster.local, subset: v1}
      weight: 25
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,refused-stream,503",
              retryRemoteLocalities: true, retryIgnorePreviousHosts: true, backoff: 25ms}
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 5s}
      abort: {percentage: {value: 0.1}, httpStatus: 400}
    mirror: {host: reviews.prod.svc.cluster.local, subset: v3}
    mirrorPercentage: {value: 50.0}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*\\\\.example\\\\.org"}]
      allowMethods: [POST, GET]
      allowCredentials: false
      allowHeaders: [X-Foo-Bar]
      exposeHeaders: [X-Expose]
      maxAge: "24h"
      unmatchedPreflights: IGNORE
    headers:
      request: {set: {test: "true"}}
  - name: legacy
    match: [{uri: {prefix: /legacy}}]
    redirect: {uri: /v1/bookRatings, authority: newratings.default.svc.cluster.local, redirectCode: 308,
               scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}
  - name: gone
    match: [{uri: {exact: /gone}}]
    directResponse: {status: 410, body: {string: "{\\"error\\": \\"gone\\"}"}}
  - name: regex-rewrite
    match: [{uri: {prefix: /service}}]
    rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "\\\\2/instance/\\\\1"}}
    mirrors:
    - destination: {host: reviews.prod.svc.cluster.local, subset: v3}
      percentage: {value: 10}
    route: [{destination: {host: reviews.prod.svc.cluster.local}}]
  - route: [{destination: {host: reviews.prod.svc.cluster.local, subset: v1}}]
  tcp:
  - match: [{port: 27017, destinationSubnets: [10.0.0.0/8], sourceLabels: {app: x}}]
    route: [{destination: {host: mongo.backup.svc.cluster.local, port: {number: 5555}}, weight: 100}]
  tls:
  - match: [{port: 443, sniHosts: [reviews.prod.svc.cluster.local]}]
    route: [{destination: {host: reviews.prod.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: bookinfo-ratings, namespace: prod}
spec:
  host: ratings.prod.svc.cluster.local
  exportTo: ["*"]
  workloadSelector: {matchLabels: {app: productpage}}
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
      localityLbSetting:
        enabled: true
        distribute: [{from: us-west/zone1/*, to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}}]
        failover: [{from: us-east, to: eu-west}]
      warmup: {duration: 60s, minimumPercent: 10, aggression: 1.5}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s, probes: 9},
            maxConnectionDuration: 1h, idleTimeout: 0s}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 1000, maxRequestsPerConnection: 10, maxRetries: 3,
             idleTimeout: 1h, h2UpgradePolicy: UPGRADE, useClientProtocol: true, maxConcurrentStreams: 100}
    outlierDetection: {consecutive5xxErrors: 7, consecutiveGatewayErrors: 3, interval: 5m, baseEjectionTime: 15m,
                       maxEjectionPercent: 100, minHealthPercent: 50, splitExternalLocalOriginErrors: true,
                       consecutiveLocalOriginFailures: 5}
    tls: {mode: ISTIO_MUTUAL, sni: ratings.prod, subjectAltNames: [spiffe://cluster.local/ns/prod/sa/ratings]}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: ROUND_ROBIN}
    - port: {number: 9080}
      loadBalancer:
        consistentHash:
          httpCookie: {name: user, ttl: 0s, path: /, attributes: [{name: SameSite, value: Strict}]}
          ringHash: {minimumRingSize: 1024}
  subsets:
  - name: testversion
    labels: {version: v3}
    trafficPolicy:
      loadBalancer:
        consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: my-gateway, namespace: some-config-namespace}
spec:
  selector: {app: my-gateway-controller}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [uk.bookinfo.com, eu.bookinfo.com]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https-443, protocol: HTTPS}
    hosts: [uk.bookinfo.com, eu.bookinfo.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-secret, minProtocolVersion: TLSV1_2}
  - port: {number: 9443, name: https-9443, protocol: HTTPS}
    hosts: [bookinfo-namespace/*.bookinfo.com]
    tls: {mode: MUTUAL, serverCertificate: /etc/certs/server.pem, privateKey: /etc/certs/key.pem,
          caCertificates: /etc/certs/ca.pem, subjectAltNames: [a.example.com]}
  - port: {number: 2379, name: mongo, protocol: MONGO}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-svc-https}
spec:
  hosts: [api.dropboxapi.com, www.googleapis.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mongo-static}
spec:
  hosts: [mymongodb.somedomain]
  addresses: [192.192.192.192/24]
  ports: [{number: 27018, name: mongodb, protocol: MONGO}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 2.2.2.2, labels: {app: mongo}}, {address: 3.3.3.3, ports: {mongodb: 27019}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-ratelimit, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager,
                                        subFilter: {name: envoy.filters.http.router}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.ratelimit
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit,
                       domain: productpage-ratelimit, failure_mode_deny: true}
"""


def test_istio_documentation_examples_are_accepted():
    docs = load_text(EXAMPLES, "examples.yaml")
    assert [f.plain() for f in admission_errors(docs)] == []
    assert all(parse(d) is not None for d in docs)
