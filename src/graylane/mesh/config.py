"""Compile Services, VirtualServices, DestinationRules, Gateways, ServiceEntries and EnvoyFilters into a snapshot.

The snapshot is plain JSON (what the control plane pushes to the data plane's `PUT /config`); durations are
pre-parsed to seconds and hosts resolved to FQDNs, so the proxy parses nothing per request. Knows resources;
knows nothing of sockets, processes or the store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from graylane.errors import ValidationError
from graylane.mesh.state import Endpoint, MeshOptions, Sidecar

GATEWAY_SOURCE = {"namespace": "istio-system", "pod": "istio-ingressgateway", "workload": "istio-ingressgateway",
                  "service_account": "istio-ingressgateway-service-account",
                  "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}}
LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"
LOCAL_RATELIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str) -> float:
    """Protobuf/Go duration to seconds: `10s`, `0.5s`, `100ms`, `1m30s`."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValidationError(f"invalid duration {value!r}", where=where, hint="use e.g. 10s, 0.5s or 100ms")
    return total


def _meta(res: Mapping[str, Any]) -> tuple[str, str]:
    md = res.get("metadata") or {}
    return str(md.get("name", "")), str(md.get("namespace") or "default")


def _where(res: Mapping[str, Any], path: str = "") -> str:
    name, ns = _meta(res)
    return f"{res.get('kind')} {ns}/{name}" + (f": {path}" if path else "")


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
            status = int(ab.get("httpStatus", 0) or 0)
            if not 200 <= status <= 599:
                raise ValidationError(f"HTTP status {status} is not in range 200-599", where=f"{where}.fault.abort")
            f["abort"] = {"httpStatus": status, "percent": _percent(ab.get("percentage"), ab.get("percent"))}
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


# --------------------------------------------------------------------------------------------- envoy filters


def _rate_limit_from(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    if value.get("@type") == "type.googleapis.com/udpa.type.v1.TypedStruct" or "type_url" in value:
        if value.get("type_url") != LOCAL_RATELIMIT_TYPE:
            raise ValidationError(f"unsupported typed_config type_url {value.get('type_url')!r}", where=where,
                                  hint="only local_ratelimit is supported (docs/dataplane.md)")
        value = value.get("value") or {}
    elif value.get("@type") not in (None, LOCAL_RATELIMIT_TYPE):
        raise ValidationError(f"unsupported typed_config @type {value.get('@type')!r}", where=where,
                              hint="only local_ratelimit is supported (docs/dataplane.md)")
    out: dict[str, Any] = {}
    tb = value.get("token_bucket")
    if tb:
        if not tb.get("max_tokens"):
            raise ValidationError("token_bucket.max_tokens is required and > 0", where=where)
        out["max_tokens"] = int(tb["max_tokens"])
        out["tokens_per_fill"] = int(tb.get("tokens_per_fill", 1))
        out["fill_interval_s"] = parse_duration(tb.get("fill_interval", "1s"), f"{where}.token_bucket")
    for key in ("filter_enabled", "filter_enforced"):
        if value.get(key):
            dv = value[key].get("default_value") or {}
            denom = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}[dv.get("denominator", "HUNDRED")]
            out[key] = 100.0 * int(dv.get("numerator", 0)) / denom
    headers = []
    for h in value.get("response_headers_to_add") or ():
        hh = h.get("header") or {}
        headers.append([str(hh.get("key", "")).lower(), str(hh.get("value", ""))])
    if headers:
        out["response_headers"] = headers
    return out


def compile_envoy_filter(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The accepted EnvoyFilter subset: Envoy's local_ratelimit on HTTP_FILTER (+ optional HTTP_ROUTE config)."""
    name, ns = _meta(res)
    spec = res.get("spec") or {}
    selector = dict((spec.get("workloadSelector") or {}).get("labels") or {})
    per_context: dict[str, dict[str, Any]] = {}
    for i, patch in enumerate(spec.get("configPatches") or ()):
        where = _where(res, f"spec.configPatches[{i}]")
        apply_to = patch.get("applyTo")
        context = (patch.get("match") or {}).get("context", "ANY")
        if context not in ("SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "ANY"):
            raise ValidationError(f"unsupported match.context {context!r}", where=where)
        value = (patch.get("patch") or {}).get("value") or {}
        if apply_to == "HTTP_FILTER":
            if value.get("name") != LOCAL_RATELIMIT:
                raise ValidationError(f"unsupported HTTP filter {value.get('name')!r}", where=where,
                                      hint=f"only {LOCAL_RATELIMIT} is supported (docs/dataplane.md)")
            per_context.setdefault(context, {}).update(_rate_limit_from(value.get("typed_config") or {}, where))
        elif apply_to == "HTTP_ROUTE":
            tpfc = value.get("typed_per_filter_config") or {}
            if set(tpfc) - {LOCAL_RATELIMIT} or not tpfc:
                raise ValidationError(f"unsupported HTTP_ROUTE patch (filters {sorted(tpfc)})", where=where,
                                      hint=f"only typed_per_filter_config for {LOCAL_RATELIMIT} is supported")
            per_context.setdefault(context, {}).update(_rate_limit_from(tpfc[LOCAL_RATELIMIT], where))
        else:
            raise ValidationError(f"unsupported applyTo {apply_to!r}", where=where,
                                  hint="only HTTP_FILTER/HTTP_ROUTE patches for local_ratelimit (docs/dataplane.md)")
    out = []
    for context, rl in per_context.items():
        if "max_tokens" not in rl:
            raise ValidationError("local_ratelimit needs a token_bucket", where=_where(res, "spec.configPatches"))
        out.append({"name": f"{ns}/{name}", "namespace": ns, "selector": selector, "context": context,
                    "filter_enabled": rl.get("filter_enabled", 0.0), "filter_enforced": rl.get("filter_enforced", 0.0),
                    **{k: v for k, v in rl.items() if k not in ("filter_enabled", "filter_enforced")}})
    return out


# --------------------------------------------------------------------------------------------- snapshot


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def compile_snapshot(resources: list[dict[str, Any]], endpoints: list[Endpoint], sidecars: list[Sidecar],
                     options: MeshOptions, version: int) -> dict[str, Any]:
    """Resources + endpoints + sidecars -> the JSON snapshot the data plane serves (raises ValidationError)."""
    r = _Resolver(options.domain_suffix)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for res in resources:
        by_kind.setdefault(str(res.get("kind")), []).append(res)
    for items in by_kind.values():
        items.sort(key=_created)

    # Deployments tell us named containerPorts (targetPort by name).
    named_ports: dict[tuple[str, str], dict[str, int]] = {}
    for dep in by_kind.get("Deployment", ()):
        name, ns = _meta(dep)
        ports: dict[str, int] = {}
        for c in (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or ():
            for p in c.get("ports") or ():
                if p.get("name"):
                    ports[str(p["name"])] = int(p["containerPort"])
        named_ports[(ns, name)] = ports

    services: dict[str, dict[str, Any]] = {}
    service_eps: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for svc in by_kind.get("Service", ()):
        name, ns = _meta(svc)
        spec = svc.get("spec") or {}
        fqdn = f"{name}.{ns}.svc.{options.domain_suffix}"
        ports = []
        selector = spec.get("selector") or {}
        for p in spec.get("ports") or ():
            port = int(p["port"])
            target = p.get("targetPort", port)
            ports.append({"port": port, "name": p.get("name", ""), "target_port": target})
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
        services[fqdn] = {"name": name, "namespace": ns, "ports": ports}

    for se in by_kind.get("ServiceEntry", ()):
        name, ns = _meta(se)
        spec = se.get("spec") or {}
        for host in spec.get("hosts") or ():
            ports = [{"port": int(p["number"]), "name": p.get("name", ""), "target_port": int(p.get("targetPort")
                                                                                             or p["number"])}
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

    # DestinationRules: merged per host; first subset definition and first top-level policy win.
    drs: dict[str, dict[str, Any]] = {}
    for dr in by_kind.get("DestinationRule", ()):
        name, ns = _meta(dr)
        spec = dr.get("spec") or {}
        host = r.fqdn(str(spec.get("host", "")), ns)
        entry = drs.setdefault(host, {"policy": None, "subsets": {}, "names": []})
        entry["names"].append(f"{ns}/{name}")
        if entry["policy"] is None and spec.get("trafficPolicy"):
            entry["policy"] = (spec["trafficPolicy"], _where(dr, "spec.trafficPolicy"))
        seen = set()
        for i, sub in enumerate(spec.get("subsets") or ()):
            sname = sub.get("name")
            if not sname:
                raise ValidationError("subset name is required", where=_where(dr, f"spec.subsets[{i}]"))
            if sname in seen:
                raise ValidationError(f"duplicate subset names: {sname}", where=_where(dr, "spec.subsets"))
            seen.add(sname)
            entry["subsets"].setdefault(sname, (dict(sub.get("labels") or {}), sub.get("trafficPolicy"),
                                                _where(dr, f"spec.subsets[{i}]")))

    clusters: dict[str, dict[str, Any]] = {}
    for fqdn, svc in services.items():
        dr = drs.get(fqdn) or {"policy": None, "subsets": {}}
        top, top_where = dr["policy"] or (None, "")
        for p in svc["ports"]:
            port = p["port"]
            eps = service_eps.get((fqdn, port), [])
            base = _traffic_policy(top, port, top_where)
            clusters[f"outbound|{port}||{fqdn}"] = {"service": fqdn, "port": port, "subset": "", "policy": base,
                                                    "endpoints": eps}
            for sname, (labels, sub_tp, sub_where) in dr["subsets"].items():
                # Subset policies inherit and override the top-level one (Istio DestinationRule docs).
                policy = {**base, **_traffic_policy(sub_tp, port, sub_where)}
                clusters[f"outbound|{port}|{sname}|{fqdn}"] = {
                    "service": fqdn, "port": port, "subset": sname, "policy": policy,
                    "endpoints": [e for e in eps if _labels_match(labels, e["labels"])]}

    gateways: dict[str, dict[str, Any]] = {}
    for gw in by_kind.get("Gateway", ()):
        name, ns = _meta(gw)
        gateways[f"{ns}/{name}"] = gw

    warnings: list[str] = []
    vss = []
    by_key = {"/".join(reversed(_meta(vs))): vs for vs in by_kind.get("VirtualService", ())}
    for vs in by_kind.get("VirtualService", ()):
        name, ns = _meta(vs)
        spec = vs.get("spec") or {}
        if not spec.get("hosts") and spec.get("http"):
            continue  # a delegate: its rules are compiled into the root that references it
        gws = [_gateway_ref(g, ns) for g in spec.get("gateways") or ()] or ["mesh"]
        for g in gws:
            if g != "mesh" and g not in gateways:
                warnings.append(f"{_where(vs)}: gateway {g} not found; rules bound to it are ignored")
        if not spec.get("http") and not spec.get("tcp") and not spec.get("tls"):
            raise ValidationError("http, tcp or tls must be provided in virtual service", where=_where(vs))
        vss.append({"name": name, "namespace": ns, "hosts": [r.fqdn(str(h), ns) for h in spec.get("hosts") or ()],
                    "gateways": gws, "export_to": list(spec.get("exportTo") or ()),
                    "http": [compiled for i, rule in enumerate(spec.get("http") or ())
                             for compiled in _compile_or_delegate(rule, ns, r, _where(vs, f"spec.http[{i}]"),
                                                                  by_key)]})

    rate_limits: list[dict[str, Any]] = []
    for ef in by_kind.get("EnvoyFilter", ()):
        rate_limits.extend(compile_envoy_filter(ef))

    listeners: list[dict[str, Any]] = []
    for sc in sidecars:
        src = {"namespace": sc.namespace, "pod": sc.pod, "labels": dict(sc.labels),
               "workload": sc.workload or "unknown", "service_account": sc.service_account}
        rl = _listener_rate_limit(rate_limits, ("SIDECAR_OUTBOUND", "ANY"), sc.namespace, sc.labels)
        listeners.append({"name": f"sidecar~{sc.namespace}~{sc.pod}", "kind": "sidecar", "bind": "127.0.0.1",
                          "port": sc.port, "source": src, "rate_limit": rl})
    by_port: dict[int, dict[str, Any]] = {}
    for key, gw in gateways.items():
        selector = dict(((gw.get("spec") or {}).get("selector")) or {})
        for i, server in enumerate((gw.get("spec") or {}).get("servers") or ()):
            port = server.get("port") or {}
            protocol = str(port.get("protocol", "HTTP")).upper()
            if protocol not in HTTP_PROTOCOLS:
                warnings.append(f"{_where(gw, f'spec.servers[{i}]')}: protocol {protocol} is not served locally")
                continue
            number = int(port["number"])
            host_port = int(options.gateway_port_map.get(number, number))
            entry = by_port.setdefault(host_port, {
                "name": f"gateway~{host_port}", "kind": "gateway", "bind": options.gateway_bind, "port": host_port,
                "server_port": number, "source": GATEWAY_SOURCE, "gateways": [], "server_hosts": [],
                "rate_limit": _listener_rate_limit(rate_limits, ("GATEWAY", "ANY"), "istio-system",
                                                   selector or GATEWAY_SOURCE["labels"])})
            if key not in entry["gateways"]:
                entry["gateways"].append(key)
            for h in server.get("hosts") or ("*",):
                h = str(h).split("/", 1)[1] if "/" in str(h) else str(h)
                if h not in entry["server_hosts"]:
                    entry["server_hosts"].append(h)
    listeners.extend(by_port[p] for p in sorted(by_port))

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
    }
    from graylane.mesh.routing import RouteTable  # validate regexes etc. exactly as the proxy will

    RouteTable(snapshot)
    return snapshot


def _listener_rate_limit(rate_limits: Iterable[dict[str, Any]], contexts: tuple[str, ...], namespace: str,
                         labels: Mapping[str, str]) -> dict[str, Any] | None:
    for rl in rate_limits:
        if rl["context"] not in contexts:
            continue
        # An EnvoyFilter applies in its own namespace, or everywhere from the root namespace istio-system.
        if rl["namespace"] not in (namespace, "istio-system"):
            continue
        if _labels_match(rl["selector"], labels):
            return rl
    return None


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
