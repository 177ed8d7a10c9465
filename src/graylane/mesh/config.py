"""Compile Services, VirtualServices, DestinationRules, Gateways, ServiceEntries and EnvoyFilters into a snapshot.

The snapshot is plain JSON (what the control plane pushes to the data plane's `PUT /config`); durations are
pre-parsed to seconds and hosts resolved to FQDNs, so the proxy parses nothing per request. Each resource is
compiled on its own (`graylane.mesh.isolation`): with `isolate=True` (the control plane) a resource that cannot
be compiled is left out and listed in `snapshot["rejected"]` while the rest of the mesh is compiled as usual;
without it (the offline explainer, tests) the first such error is raised. Knows resources; knows nothing of
sockets, processes or the store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from graylane.errors import ValidationError
from graylane.mesh import config_tcp, gateway_api
from graylane.mesh.config_base import endpoint_index, parse_duration, selectable
from graylane.mesh.config_base import labels_match as _labels_match
from graylane.mesh.config_base import meta as _meta
from graylane.mesh.config_base import where_of as _where
from graylane.mesh.envoyfilter import LOCAL_RATELIMIT, LOCAL_RATELIMIT_TYPE, compile_envoy_filter, listener_rate_limit
from graylane.mesh.isolation import Rejections
from graylane.mesh.protocols import abort_codes, h2_protocol
from graylane.mesh.snapshot import decode_cluster_policy, decode_rule, decode_snapshot
from graylane.mesh.state import Endpoint, MeshOptions, Sidecar
from graylane.resources.sticky import STICKY_ANNOTATION, parse_sticky

__all__ = ["GATEWAY_SOURCE", "LOCAL_RATELIMIT", "LOCAL_RATELIMIT_TYPE", "compile_envoy_filter", "compile_snapshot",
           "endpoints_from_deployments", "parse_duration"]

GATEWAY_SOURCE = {"namespace": "istio-system", "pod": "istio-ingressgateway", "workload": "istio-ingressgateway",
                  "service_account": "istio-ingressgateway-service-account",
                  "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}}
HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}


class _Resolver:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def fqdn(self, host: str, namespace: str) -> str:
        # ResolveShortnameToFQDN: no dot => <host>.<rule namespace>.svc.<domain>; anything with a dot is kept.
        if host == "*" or "." in host or _is_ip(host):
            return host
        return f"{host}.{namespace}.svc.{self.suffix}"


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", host))


def _gateway_ref(ref: str, namespace: str) -> str:
    if ref == "mesh" or "/" in ref:
        return ref
    if "." in ref:  # legacy name.namespace form
        name, _, ns = ref.partition(".")
        return f"{ns}/{name}"
    return f"{namespace}/{ref}"


def _percent(spec: Mapping[str, Any] | None, legacy: Any = None, default: float = 0.0) -> float:
    if spec and "value" in spec:
        return float(spec["value"])
    if legacy is not None:
        return float(legacy)
    return default


def _created(res: Mapping[str, Any]) -> tuple[str, str, str]:
    md = res.get("metadata") or {}
    name, ns = _meta(res)
    return (str(md.get("creationTimestamp") or ""), ns, name)


# --------------------------------------------------------------------------------------------- policies


def _traffic_policy(tp: Mapping[str, Any] | None, port: int, where: str) -> dict[str, Any]:
    """One level of a DestinationRule trafficPolicy for `port`: portLevelSettings override the level's fields."""
    if not tp:
        return {}
    out = _policy_fields(tp, where)
    for i, pls in enumerate(tp.get("portLevelSettings") or ()):
        if int((pls.get("port") or {}).get("number", -1)) == port:
            out.update(_policy_fields(pls, f"{where}.portLevelSettings[{i}]"))
    return out


def _policy_fields(tp: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if tp.get("loadBalancer"):
        lb = dict(tp["loadBalancer"])
        ch = lb.get("consistentHash")
        if ch and ch.get("httpCookie"):
            cookie = dict(ch["httpCookie"])
            if not cookie.get("name"):
                raise ValidationError("name required for HttpCookie", where=f"{where}.loadBalancer")
            cookie["ttl_s"] = parse_duration(cookie["ttl"], where) if cookie.get("ttl") else 0.0
            lb["consistentHash"] = {**ch, "httpCookie": cookie}
        out["loadBalancer"] = lb
    cp = tp.get("connectionPool")
    if cp:
        tcp, http = cp.get("tcp") or {}, cp.get("http") or {}
        pool: dict[str, Any] = {}
        for key, src, name in (("max_connections", tcp, "maxConnections"),
                               ("max_pending", http, "http1MaxPendingRequests"),
                               ("max_requests_per_connection", http, "maxRequestsPerConnection"),
                               ("max_retries", http, "maxRetries")):
            if src.get(name) is not None:
                value = int(src[name])
                if value < 0:
                    raise ValidationError(f"{name} must not be negative", where=f"{where}.connectionPool")
                pool[key] = value
        if tcp.get("connectTimeout"):
            pool["connect_timeout_s"] = parse_duration(tcp["connectTimeout"], f"{where}.connectionPool.tcp")
        idle = http.get("idleTimeout") or tcp.get("idleTimeout")
        if idle:
            pool["idle_timeout_s"] = parse_duration(idle, f"{where}.connectionPool")
        out["pool"] = pool
    od = tp.get("outlierDetection")
    if od:
        w = f"{where}.outlierDetection"
        out["outlier"] = {
            "consecutive_5xx": int(od.get("consecutive5xxErrors", od.get("consecutiveErrors", 5))),
            "consecutive_gateway": int(od.get("consecutiveGatewayErrors", 0)),
            "interval_s": parse_duration(od.get("interval", "10s"), w),
            "base_ejection_s": parse_duration(od.get("baseEjectionTime", "30s"), w),
            "max_ejection_percent": float(od.get("maxEjectionPercent", 10)),
        }
    return out


# --------------------------------------------------------------------------------------------- routes


def _destination(d: Mapping[str, Any], ns: str, r: _Resolver, where: str) -> dict[str, Any]:
    dest = d.get("destination") or {}
    if not dest.get("host"):
        raise ValidationError("destination.host is required", where=where)
    port = (dest.get("port") or {}).get("number")
    return {"host": r.fqdn(str(dest["host"]), ns), "subset": str(dest.get("subset") or ""),
            "port": int(port) if port else None}


def _compile_rule(rule: Mapping[str, Any], ns: str, r: _Resolver, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.get("name", "")}
    matches = []
    for mi, m in enumerate(rule.get("match") or ()):
        m = dict(m)
        if m.get("gateways"):
            m["gateways"] = [_gateway_ref(g, ns) for g in m["gateways"]]
        for key in ("uri", "scheme", "method", "authority"):
            if key in m and m[key] is not None and not isinstance(m[key], Mapping):
                raise ValidationError(f"{key} must be a StringMatch", where=f"{where}.match[{mi}]")
        matches.append(m)
    if matches:
        out["match"] = matches
    if rule.get("route"):
        route = rule["route"]
        dests = []
        for di, d in enumerate(route):
            w = int(d.get("weight", 0) or 0)
            if w < 0:
                raise ValidationError(f"weight {w} < 0", where=f"{where}.route[{di}]")
            item = _destination(d, ns, r, f"{where}.route[{di}]")
            item["weight"] = w if len(route) > 1 else 100
            if d.get("headers"):
                item["headers"] = d["headers"]
            dests.append(item)
        if len(dests) > 1 and sum(x["weight"] for x in dests) == 0:
            raise ValidationError("total destination weight = 0", where=f"{where}.route")
        out["route"] = dests
    elif not rule.get("redirect") and not rule.get("directResponse") and not rule.get("delegate"):
        raise ValidationError("HTTP route, redirect or direct_response is required", where=where)
    for key in ("redirect", "directResponse", "rewrite", "corsPolicy", "headers"):
        if rule.get(key) is not None:
            out[key] = rule[key]
    if rule.get("corsPolicy") and rule["corsPolicy"].get("maxAge"):
        out["corsPolicy"] = {**rule["corsPolicy"],
                             "max_age_s": int(parse_duration(rule["corsPolicy"]["maxAge"], f"{where}.corsPolicy"))}
    if rule.get("timeout") is not None:
        t = parse_duration(rule["timeout"], f"{where}.timeout")
        out["timeout_s"] = t or None  # 0s disables
    retries = rule.get("retries")
    if retries is not None:
        attempts = int(retries.get("attempts", 0) or 0)
        retry_on: list[str] = []
        codes: list[int] = []
        for part in str(retries.get("retryOn") or "").split(","):
            part = part.strip()
            if not part:
                continue
            if part.isdigit():
                codes.append(int(part))
            else:
                retry_on.append(part)
        if codes:
            retry_on.append("retriable-status-codes")  # Istio appends it when codes are listed
        if attempts and not retries.get("retryOn"):
            retry_on = ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"]
            codes = [503]
        out["retries"] = {"attempts": attempts, "retry_on": retry_on, "codes": codes,
                          "per_try_timeout_s": parse_duration(retries["perTryTimeout"], f"{where}.retries")
                          if retries.get("perTryTimeout") else None}
    fault = rule.get("fault")
    if fault:
        f: dict[str, Any] = {}
        if fault.get("delay"):
            dl = fault["delay"]
            f["delay"] = {"fixed_s": parse_duration(dl.get("fixedDelay", "0s"), f"{where}.fault.delay"),
                          "percent": _percent(dl.get("percentage"), dl.get("percent"))}
        if fault.get("abort"):
            ab = fault["abort"]
            status, grpc_status = abort_codes(ab, f"{where}.fault.abort")
            if not 200 <= status <= 599:
                raise ValidationError(f"HTTP status {status} is not in range 200-599", where=f"{where}.fault.abort")
            f["abort"] = {"httpStatus": status, "percent": _percent(ab.get("percentage"), ab.get("percent")),
                          "grpcStatus": grpc_status}
        if not f:
            raise ValidationError("HTTP fault injection must have an abort and/or a delay", where=f"{where}.fault")
        out["fault"] = f
    mirrors = []
    if rule.get("mirror"):
        m = _destination({"destination": rule["mirror"]}, ns, r, f"{where}.mirror")
        m["percent"] = _percent(rule.get("mirrorPercentage"), rule.get("mirrorPercent"), 100.0)
        mirrors.append(m)
    for mi, mm in enumerate(rule.get("mirrors") or ()):
        m = _destination(mm, ns, r, f"{where}.mirrors[{mi}]")
        m["percent"] = _percent(mm.get("percentage"), None, 100.0)
        mirrors.append(m)
    if mirrors:
        out["mirrors"] = mirrors
    return out


def _compile_or_delegate(rule: Mapping[str, Any], ns: str, r: _Resolver, where: str,
                         by_key: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A root rule with `delegate` becomes the delegate's rules, each match ANDed with the root's (one level)."""
    ref = rule.get("delegate")
    if not ref:
        return [_compile_rule(rule, ns, r, where)]
    key = f"{ref.get('namespace') or ns}/{ref.get('name')}"
    target = by_key.get(key)
    if target is None:
        raise ValidationError(f"delegate VirtualService {key} not found", where=f"{where}.delegate")
    d_name, d_ns = _meta(target)
    out = []
    for j, drule in enumerate((target.get("spec") or {}).get("http") or ()):
        dwhere = _where(target, f"spec.http[{j}]")
        if drule.get("delegate"):
            raise ValidationError("delegate HTTP route cannot contain delegate", where=dwhere)
        merged = []
        for rm in rule.get("match") or [{}]:
            for dm in drule.get("match") or [{}]:
                m = {**rm, **{k: v for k, v in dm.items() if k not in ("headers", "withoutHeaders", "queryParams")}}
                for k in ("headers", "withoutHeaders", "queryParams"):
                    if rm.get(k) or dm.get(k):
                        m[k] = {**(rm.get(k) or {}), **(dm.get(k) or {})}
                if m:
                    merged.append(m)
        compiled = _compile_rule({**drule, "match": merged} if merged else {k: v for k, v in drule.items()
                                                                            if k != "match"}, d_ns, r, dwhere)
        out.append(compiled)
    return out


# --------------------------------------------------------------------------------------------- snapshot


def compile_snapshot(resources: list[dict[str, Any]], endpoints: list[Endpoint], sidecars: list[Sidecar],
                     options: MeshOptions, version: int, *, isolate: bool = False) -> dict[str, Any]:
    """Resources + endpoints + sidecars -> the JSON snapshot the data plane serves.

    Raises ValidationError for the first resource that cannot be compiled, or with `isolate=True` leaves such
    resources out and lists them in `snapshot["rejected"]` (kind, namespace, name, resourceVersion, message).
    """
    rejections = Rejections(strict=not isolate)
    for _ in range(len(resources) + 1):
        try:
            return _compile(resources, endpoints, sidecars, options, version, rejections)
        except ValidationError as exc:
            # The whole-snapshot check named a resource its own compile step let through: leave it out too.
            culprit = rejections.culprit(exc, resources) if isolate else None
            if culprit is None:
                raise
            rejections.add(culprit, str(exc))
    raise AssertionError("unreachable")  # pragma: no cover


def _compile(resources: list[dict[str, Any]], endpoints: list[Endpoint], sidecars: list[Sidecar],
             options: MeshOptions, version: int, rej: Rejections) -> dict[str, Any]:
    r = _Resolver(options.domain_suffix)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for res in resources:
        by_kind.setdefault(str(res.get("kind")), []).append(res)
    for items in by_kind.values():
        items.sort(key=_created)

    # Deployments tell us named containerPorts (targetPort by name).
    named_ports: dict[tuple[str, str], dict[str, int]] = {}
    for dep in by_kind.get("Deployment", ()):
        ports = rej.attempt(dep, lambda dep=dep: _named_ports(dep))
        if ports is not None:
            named_ports[_meta(dep)[::-1]] = ports

    services: dict[str, dict[str, Any]] = {}
    service_eps: dict[tuple[str, int], list[dict[str, Any]]] = {}
    index = endpoint_index(endpoints)  # a Service's selector looks up its endpoints, not every endpoint
    for svc in by_kind.get("Service", ()):
        got = rej.attempt(svc, lambda svc=svc: _service(svc, selectable(index, endpoints, svc), named_ports, options))
        if got is not None:
            services.update(got[0])
            service_eps.update(got[1])
    for se in by_kind.get("ServiceEntry", ()):
        got = rej.attempt(se, lambda se=se: _service_entry(se))
        if got is not None:
            services.update(got[0])
            service_eps.update(got[1])

    # DestinationRules: merged per host; first subset definition and first top-level policy win.
    drs: dict[str, dict[str, Any]] = {}
    for dr in by_kind.get("DestinationRule", ()):
        got = rej.attempt(dr, lambda dr=dr: _destination_rule(dr, services, r))
        if got is None:
            continue
        host, policy, subsets = got
        entry = drs.setdefault(host, {"policy": None, "subsets": {}, "names": []})
        entry["names"].append("/".join(reversed(_meta(dr))))
        if entry["policy"] is None and policy is not None:
            entry["policy"] = policy
        for sname, sub in subsets.items():
            entry["subsets"].setdefault(sname, sub)

    clusters: dict[str, dict[str, Any]] = {}
    for fqdn, svc in services.items():
        dr = drs.get(fqdn) or {"policy": None, "subsets": {}}
        for p in svc["ports"]:
            port = p["port"]
            eps = service_eps.get((fqdn, port), [])
            base = (dr["policy"] or {}).get(port, {})
            clusters[f"outbound|{port}||{fqdn}"] = {"service": fqdn, "port": port, "subset": "", "policy": base,
                                                    "endpoints": eps}
            for sname, (labels, sub_policies) in dr["subsets"].items():
                # Subset policies inherit and override the top-level one (Istio DestinationRule docs).
                clusters[f"outbound|{port}|{sname}|{fqdn}"] = {
                    "service": fqdn, "port": port, "subset": sname, "policy": {**base, **sub_policies.get(port, {})},
                    "endpoints": [e for e in eps if _labels_match(labels, e["labels"])]}

    gapi = gateway_api.translate(by_kind, services, options, rej, lambda rule, where: decode_rule(
        0, _compile_rule(rule, "default", r, where)))  # Gateway API kinds -> internal Gateways + VirtualServices
    by_kind.setdefault("Gateway", []).extend(gapi.gateways)
    by_kind.setdefault("VirtualService", []).extend(gapi.virtual_services)
    warnings: list[str] = list(gapi.warnings)
    gateways: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for gw in by_kind.get("Gateway", ()):
        got_gw = rej.attempt(gw, lambda gw=gw: _gateway_servers(gw, options))
        if got_gw is not None:
            gateways["/".join(reversed(_meta(gw)))] = (gw, got_gw[0])
            warnings += got_gw[1]

    vss = []
    by_key = {"/".join(reversed(_meta(vs))): vs for vs in by_kind.get("VirtualService", ())}
    for vs in by_kind.get("VirtualService", ()):
        spec = vs.get("spec") or {}
        if not spec.get("hosts") and spec.get("http"):
            continue  # a delegate: its rules are compiled into the root that references it
        compiled = rej.attempt(vs, lambda vs=vs: _virtual_service(vs, r, by_key))
        if compiled is None:
            continue
        for g in compiled["gateways"]:
            if g != "mesh" and g not in gateways:
                warnings.append(f"{_where(vs)}: gateway {g} not found; rules bound to it are ignored")
        vss.append(compiled)

    rate_limits: list[dict[str, Any]] = []
    for ef in by_kind.get("EnvoyFilter", ()):
        rate_limits.extend(rej.attempt(ef, lambda ef=ef: compile_envoy_filter(ef)) or ())

    listeners: list[dict[str, Any]] = []
    for sc in sidecars:
        src = {"namespace": sc.namespace, "pod": sc.pod, "labels": dict(sc.labels),
               "workload": sc.workload or "unknown", "service_account": sc.service_account}
        rl = listener_rate_limit(rate_limits, ("SIDECAR_OUTBOUND", "ANY"), sc.namespace, sc.labels)
        listeners.append({"name": f"sidecar~{sc.namespace}~{sc.pod}", "kind": "sidecar", "bind": "127.0.0.1",
                          "port": sc.port, "source": src, "rate_limit": rl})
    by_port: dict[int, dict[str, Any]] = {}
    for key, (gw, servers) in gateways.items():
        selector = dict(((gw.get("spec") or {}).get("selector")) or {})
        for server in servers:
            host_port = server["host_port"]
            entry = by_port.setdefault(host_port, {
                "name": f"gateway~{host_port}", "kind": "gateway", "bind": options.gateway_bind, "port": host_port,
                "server_port": server["number"], "source": GATEWAY_SOURCE, "gateways": [], "server_hosts": [],
                "rate_limit": listener_rate_limit(rate_limits, ("GATEWAY", "ANY"), "istio-system",
                                                  selector or GATEWAY_SOURCE["labels"])})
            if key not in entry["gateways"]:
                entry["gateways"].append(key)
            for h in server["hosts"]:
                if h not in entry["server_hosts"]:
                    entry["server_hosts"].append(h)
    listeners.extend(by_port[p] for p in sorted(by_port))
    l4 = config_tcp.compile_l4(by_kind, gateways, options, rej, listeners, rate_limits, GATEWAY_SOURCE, warnings)

    snapshot = {
        "version": version,
        "options": {"load_balancing": options.load_balancing, "trace_sampling": options.trace_sampling,
                    "access_log": options.access_log, "domain_suffix": options.domain_suffix},
        "services": services,
        "subsets": {h: sorted(d["subsets"]) for h, d in drs.items()},
        "virtual_services": vss,
        "clusters": clusters,
        "listeners": listeners,
        "inbound_rate_limits": [rl for rl in rate_limits if rl["context"] in ("SIDECAR_INBOUND", "ANY")],
        "warnings": warnings,
        "rejected": rej.to_json(),
        **l4,  # l4_routes, tls_credentials
        gateway_api.STATUS_KEY: gapi.statuses,
    }
    decode_snapshot(snapshot)  # validate regexes etc. exactly as the proxy will
    return snapshot


# --------------------------------------------------------------------------------------------- one resource each


def _named_ports(dep: Mapping[str, Any]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for c in (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name"):
                ports[str(p["name"])] = int(p["containerPort"])
    return ports


_Registry = tuple[dict[str, dict[str, Any]], dict[tuple[str, int], list[dict[str, Any]]]]


def _service(svc: Mapping[str, Any], endpoints: list[Endpoint], named_ports: dict[tuple[str, str], dict[str, int]],
             options: MeshOptions) -> _Registry:
    name, ns = _meta(svc)
    spec = svc.get("spec") or {}
    fqdn = f"{name}.{ns}.svc.{options.domain_suffix}"
    ports = []
    service_eps: dict[tuple[str, int], list[dict[str, Any]]] = {}
    selector = spec.get("selector") or {}
    for p in spec.get("ports") or ():
        port = int(p["port"])
        target = p.get("targetPort", port)
        ports.append({"port": port, "name": p.get("name", ""), "target_port": target, "protocol": h2_protocol(p)})
        eps = []
        if selector:
            for ep in endpoints:
                if ep.namespace != ns or not _labels_match(selector, ep.labels):
                    continue
                if isinstance(target, int) or str(target).isdigit():
                    if ep.container_port != int(target):
                        continue
                else:
                    known = named_ports.get((ep.namespace, ep.workload), {})
                    if str(target) in known and known[str(target)] != ep.container_port:
                        continue
                eps.append(_endpoint_json(ep))
        service_eps[(fqdn, port)] = eps
    return {fqdn: {"name": name, "namespace": ns, "ports": ports}}, service_eps


def _service_entry(se: Mapping[str, Any]) -> _Registry:
    _, ns = _meta(se)
    spec = se.get("spec") or {}
    services: dict[str, dict[str, Any]] = {}
    service_eps: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for host in spec.get("hosts") or ():
        ports = [{"port": int(p["number"]), "name": p.get("name", ""), "protocol": h2_protocol({
                  "appProtocol": p.get("protocol")}), "target_port": int(p.get("targetPort") or p["number"])}
                 for p in spec.get("ports") or ()]
        services[host] = {"name": host, "namespace": ns, "ports": ports, "external": True}
        for p in ports:
            eps = []
            for e in spec.get("endpoints") or ():
                eport = int((e.get("ports") or {}).get(p["name"], p["target_port"]))
                eps.append({"address": f"{e['address']}:{eport}", "host": e["address"], "port": eport,
                            "pod": "", "namespace": ns, "labels": dict(e.get("labels") or {}), "workload": "",
                            "service_account": "default", "ready": True})
            if not eps and spec.get("resolution", "NONE") in ("DNS", "NONE"):
                eps.append({"address": f"{host}:{p['target_port']}", "host": host, "port": p["target_port"],
                            "pod": "", "namespace": ns, "labels": {}, "workload": "", "service_account": "default",
                            "ready": True})
            service_eps[(host, p["port"])] = eps
    return services, service_eps


def _destination_rule(dr: Mapping[str, Any], services: Mapping[str, dict[str, Any]], r: _Resolver) -> tuple[
        str, dict[int, dict[str, Any]] | None, dict[str, tuple[dict[str, str], dict[int, dict[str, Any]]]]]:
    """One DR's contribution: its host, its top-level policy and subsets, each compiled for every port of the
    host's service (portLevelSettings override their level), checked as the proxy will load them."""
    _, ns = _meta(dr)
    spec = dr.get("spec") or {}
    host = r.fqdn(str(spec.get("host", "")), ns)
    ports = [int(p["port"]) for p in (services.get(host) or {}).get("ports") or ()]

    def per_port(tp: Mapping[str, Any] | None, where: str) -> dict[int, dict[str, Any]]:
        out = {port: _traffic_policy(tp, port, where) for port in ports}
        for policy in out.values():
            decode_cluster_policy(policy)
        return out

    top = spec.get("trafficPolicy")
    policy = per_port(top, _where(dr, "spec.trafficPolicy")) if top else None
    subsets: dict[str, tuple[dict[str, str], dict[int, dict[str, Any]]]] = {}
    for i, sub in enumerate(spec.get("subsets") or ()):
        sname = sub.get("name")
        if not sname:
            raise ValidationError("subset name is required", where=_where(dr, f"spec.subsets[{i}]"))
        if sname in subsets:
            raise ValidationError(f"duplicate subset names: {sname}", where=_where(dr, "spec.subsets"))
        subsets[sname] = (dict(sub.get("labels") or {}),
                          per_port(sub.get("trafficPolicy"), _where(dr, f"spec.subsets[{i}]")))
    return host, policy, subsets


def _gateway_servers(gw: Mapping[str, Any], options: MeshOptions) -> tuple[list[dict[str, Any]], list[str]]:
    """A Gateway's HTTP servers as listener parts ({number, host_port, hosts}), and warnings for the rest."""
    servers, warnings = [], []
    for server in (gw.get("spec") or {}).get("servers") or ():
        port = server.get("port") or {}
        protocol = str(port.get("protocol", "HTTP")).upper()
        if protocol not in HTTP_PROTOCOLS:  # TCP, TLS, HTTPS (and the warning for the rest): config_tcp.py
            continue
        number = int(port["number"])
        hosts = [str(h).split("/", 1)[1] if "/" in str(h) else str(h) for h in server.get("hosts") or ("*",)]
        servers.append({"number": number, "host_port": int(options.gateway_port_map.get(number, number)),
                        "hosts": hosts})
    return servers, warnings


def _virtual_service(vs: Mapping[str, Any], r: _Resolver, by_key: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    name, ns = _meta(vs)
    spec = vs.get("spec") or {}
    if not spec.get("http") and not spec.get("tcp") and not spec.get("tls"):
        raise ValidationError("http, tcp or tls must be provided in virtual service", where=_where(vs))
    rules = [compiled for i, rule in enumerate(spec.get("http") or ())
             for compiled in _compile_or_delegate(rule, ns, r, _where(vs, f"spec.http[{i}]"), by_key)]
    for j, rule in enumerate(rules):  # as the proxy will load them (RE2 regexes, string matches)
        try:
            decode_rule(j, rule, f"http[{j}]")
        except ValidationError as exc:
            raise ValidationError(f"{_where(vs)}: {exc.message}") from None
    out: dict[str, Any] = {
        "name": name, "namespace": ns, "hosts": [r.fqdn(str(h), ns) for h in spec.get("hosts") or ()],
        "gateways": [_gateway_ref(g, ns) for g in spec.get("gateways") or ()] or ["mesh"],
        "export_to": list(spec.get("exportTo") or ()), "http": rules}
    sticky = ((vs.get("metadata") or {}).get("annotations") or {}).get(STICKY_ANNOTATION)
    if sticky is not None:
        try:
            out["sticky"] = parse_sticky(sticky)
        except ValueError as exc:
            raise ValidationError(f"{_where(vs)}: annotation {STICKY_ANNOTATION}: {exc}") from None
    return out


def _endpoint_json(ep: Endpoint) -> dict[str, Any]:
    d = asdict(ep)
    d["address"] = f"{ep.host}:{ep.port}"
    return d


def endpoints_from_deployments(resources: list[dict[str, Any]]) -> tuple[list[Endpoint], list[str]]:
    """For the offline explainer: every Deployment's replicas, ready, at placeholder addresses. Also notes."""
    eps: list[Endpoint] = []
    for dep in resources:
        if dep.get("kind") != "Deployment":
            continue
        name, ns = _meta(dep)
        spec = dep.get("spec") or {}
        tmpl = spec.get("template") or {}
        labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
        pod_spec = tmpl.get("spec") or {}
        cport = 9080
        for c in pod_spec.get("containers") or ():
            for p in c.get("ports") or ():
                cport = int(p["containerPort"])
                break
        for i in range(int(spec.get("replicas", 1))):
            eps.append(Endpoint(ns, f"{name}-{i}", labels, "127.0.0.1", 0, cport, True, name,
                                str(pod_spec.get("serviceAccountName") or "default")))
    notes = []
    for svc in resources:
        if svc.get("kind") != "Service":
            continue
        name, ns = _meta(svc)
        selector = (svc.get("spec") or {}).get("selector") or {}
        if selector and not any(e.namespace == ns and _labels_match(selector, e.labels) for e in eps):
            notes.append(f"Service {ns}/{name}: no Deployment in the input selects {selector}; "
                         "its routes will report no healthy upstream")
    return eps, notes
