"""Compile the TCP and TLS side of Gateways and VirtualServices into snapshot parts.

Gateway servers with protocol TCP (or any non-HTTP protocol, which Istio proxies as TCP), TLS and HTTPS become
gateway listeners with a `protocol` (tcp, tls passthrough, or http behind terminated TLS) and `tls_servers`
(SIMPLE/MUTUAL/OPTIONAL_MUTUAL, certificates from the Secret named by `credentialName`, PEM carried in
`tls_credentials`); HTTP servers with `tls.httpsRedirect` mark their listener's hosts for a 301 to https.
VirtualService `tcp` and `tls` routes become `l4_routes`. A server whose credential is unusable is left out and
named on its Gateway (the rest of the Gateway is served); a VirtualService whose tcp/tls routes are malformed is
named the same way. Pure functions over resource bodies; no sockets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graylane.errors import ValidationError
from graylane.mesh.config_base import meta, where_of
from graylane.mesh.envoyfilter import listener_rate_limit
from graylane.mesh.isolation import Rejections
from graylane.mesh.state import MeshOptions
from graylane.mesh.tlscred import credential

HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}
# Server protocols compiled here: TLS-terminating HTTP, TLS, and what Istio proxies as opaque TCP.
PROTOCOLS = {"HTTPS", "TLS", "TCP", "MONGO", "MYSQL", "REDIS"}
TERMINATE = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
VERIFIES_CLIENTS = ("MUTUAL", "OPTIONAL_MUTUAL")  # a CA is needed; OPTIONAL_MUTUAL lets a client without one in


def _fqdn(host: str, namespace: str, suffix: str) -> str:
    if host == "*" or "." in host or ":" in host or host.replace(".", "").isdigit():
        return host
    return f"{host}.{namespace}.svc.{suffix}"


def _gateway_ref(ref: str, namespace: str) -> str:
    if ref == "mesh" or "/" in ref:
        return ref
    if "." in ref:
        name, _, ns = ref.partition(".")
        return f"{ns}/{name}"
    return f"{namespace}/{ref}"


def compile_l4(by_kind: Mapping[str, list[dict[str, Any]]], gateways: Mapping[str, tuple[dict[str, Any], Any]],
               options: MeshOptions, rej: Rejections, listeners: list[dict[str, Any]],
               rate_limits: list[dict[str, Any]], source: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Add TCP/TLS/HTTPS gateway listeners (and httpsRedirect hosts) to `listeners`; return the snapshot keys
    `l4_routes` and `tls_credentials`."""
    secrets = {meta(s)[::-1]: s for s in by_kind.get("Secret", ())}
    by_name = {lst["name"]: lst for lst in listeners}
    credentials: dict[str, dict[str, str]] = {}
    for key, (gw, _) in gateways.items():
        spec = gw.get("spec") or {}
        for i, server in enumerate(spec.get("servers") or ()):
            where = where_of(gw, f"spec.servers[{i}]")
            try:
                _server(key, gw, server, where, options, secrets, by_name, credentials, rate_limits, source,
                        warnings)
            except ValidationError as exc:
                if rej.strict:
                    raise
                rej.add(gw, f"{exc}; this server is left out, the Gateway's other servers are served")
    listeners[:] = list(by_name.values())
    routes: list[dict[str, Any]] = []
    for vs in by_kind.get("VirtualService", ()):
        got = rej.attempt(vs, lambda vs=vs: _l4_routes(vs, options.domain_suffix, warnings))
        routes.extend(got or ())
    return {"l4_routes": routes, "tls_credentials": credentials}


def _server(key: str, gw: Mapping[str, Any], server: Mapping[str, Any], where: str, options: MeshOptions,
            secrets: Mapping[tuple[str, str], Mapping[str, Any]], by_name: dict[str, dict[str, Any]],
            credentials: dict[str, dict[str, str]], rate_limits: list[dict[str, Any]], source: Mapping[str, Any],
            warnings: list[str]) -> None:
    name, ns = meta(gw)
    port = server.get("port") or {}
    protocol = str(port.get("protocol", "HTTP")).upper()
    number = int(port["number"])
    host_port = int(options.gateway_port_map.get(number, number))
    lname = f"gateway~{host_port}"
    hosts = [str(h).split("/", 1)[1] if "/" in str(h) else str(h) for h in server.get("hosts") or ("*",)]
    tls = server.get("tls") or {}
    if protocol in HTTP_PROTOCOLS:
        if tls.get("httpsRedirect") and lname in by_name:
            redirect = by_name[lname].setdefault("https_redirect", [])
            redirect.extend(h for h in hosts if h not in redirect)
        return
    if protocol not in PROTOCOLS:
        warnings.append(f"{where}: protocol {protocol} is not served locally")
        return
    mode = str(tls.get("mode") or "").upper()
    if protocol in ("HTTPS", "TLS") and not mode:
        raise ValidationError(f"server protocol {protocol} needs tls.mode (SIMPLE, MUTUAL or PASSTHROUGH)",
                              where=f"{where}.tls")
    if mode and mode not in (*TERMINATE, "PASSTHROUGH"):
        warnings.append(f"{where}: tls.mode {mode} is not served locally (SIMPLE, MUTUAL, OPTIONAL_MUTUAL and "
                        "PASSTHROUGH are)")
        return
    if mode == "PASSTHROUGH":
        kind = "tls"
    elif protocol == "HTTPS":
        kind = "http"
    else:
        kind = "tcp"  # TCP and friends; TLS with SIMPLE/MUTUAL is terminated, then proxied as TCP
    tls_server = None
    if mode in TERMINATE:
        cred_name = str(tls.get("credentialName") or "")
        if not cred_name and (tls.get("serverCertificate") or tls.get("privateKey")):
            # Istio accepts certificate files mounted in the gateway's pod (istio.io's egress TLS origination task);
            # the local gateway has no such files: this server is not served, the Gateway's others are.
            warnings.append(f"{where}: tls.serverCertificate/privateKey name files in Istio's gateway pod, which the "
                            "local gateway does not read; this server is not served locally (use tls.credentialName)")
            return
        if not cred_name:
            raise ValidationError(f"tls.mode {mode} needs tls.credentialName (a kubernetes.io/tls Secret); "
                                  "file paths (serverCertificate/privateKey) are not read locally",
                                  where=f"{where}.tls.credentialName")
        namespaces = (ns,) if ns == "istio-system" else (ns, "istio-system")
        try:
            cred_key, pem = credential(secrets, namespaces, cred_name, mode in VERIFIES_CLIENTS, f"{where}.tls")
        except ValidationError as exc:  # name the server's field as well as the Secret's key
            if str(exc).startswith(where):
                raise
            raise ValidationError(str(exc), where=f"{where}.tls.credentialName") from None
        if mode in VERIFIES_CLIENTS:
            cred_key += "#mutual"
        credentials[cred_key] = pem
        tls_server = {"hosts": hosts, "mode": mode, "credential": cred_key}
    entry = by_name.get(lname)
    if entry is None:
        selector = dict(((gw.get("spec") or {}).get("selector")) or {})
        entry = by_name[lname] = {
            "name": lname, "kind": "gateway", "bind": options.gateway_bind, "port": host_port, "server_port": number,
            "source": dict(source), "gateways": [], "server_hosts": [], "protocol": kind,
            "rate_limit": listener_rate_limit(rate_limits, ("GATEWAY", "ANY"), "istio-system",
                                              selector or source["labels"]) if kind == "http" else None}
    elif entry.get("protocol", "http") != kind or bool(entry.get("tls_servers")) != (tls_server is not None):
        raise ValidationError(f"port {number} is already served as {entry.get('protocol', 'http')}"
                              f"{' with TLS' if entry.get('tls_servers') else ''} by another server",
                              where=f"{where}.port")
    elif tls_server is not None and entry["tls_servers"][0]["mode"] != mode:
        # One port, one client-certificate policy locally (the handshake's verify mode is the port's).
        raise ValidationError(f"port {number} already has {entry['tls_servers'][0]['mode']} servers; servers of "
                              "different TLS modes need separate ports locally", where=f"{where}.tls.mode")
    if key not in entry["gateways"]:
        entry["gateways"].append(key)
    entry["server_hosts"].extend(h for h in hosts if h not in entry["server_hosts"])
    if tls_server is not None:
        entry.setdefault("tls_servers", []).append(tls_server)


def _l4_routes(vs: Mapping[str, Any], suffix: str, warnings: list[str]) -> list[dict[str, Any]]:
    name, ns = meta(vs)
    spec = vs.get("spec") or {}
    if not spec.get("tcp") and not spec.get("tls"):
        return []
    vs_gateways = [_gateway_ref(str(g), ns) for g in spec.get("gateways") or ()] or ["mesh"]
    hosts = [_fqdn(str(h), ns, suffix) for h in spec.get("hosts") or ()]
    if "mesh" in vs_gateways and spec.get("tls"):
        warnings.append(f"{where_of(vs)}: tls routes are served on gateways only (sidecars serve tcp routes for "
                        "CONNECT tunnels); the tls routes bound to mesh are ignored locally")
    out = []
    for protocol, field in (("tcp", "tcp"), ("tls", "tls")):
        for i, rule in enumerate(spec.get(field) or ()):
            where = where_of(vs, f"spec.{field}[{i}]")
            if not isinstance(rule, Mapping):
                raise ValidationError("must be an object", where=where)
            matches = []
            for mi, m in enumerate(rule.get("match") or ()):
                mwhere = f"{where}.match[{mi}]"
                item: dict[str, Any] = {}
                if m.get("port") is not None:
                    item["port"] = int(m["port"])
                if m.get("gateways"):
                    item["gateways"] = [_gateway_ref(str(g), ns) for g in m["gateways"]]
                if m.get("sourceNamespace"):
                    item["sourceNamespace"] = str(m["sourceNamespace"])
                if protocol == "tls":
                    sni = [str(h) for h in m.get("sniHosts") or ()]
                    if not sni:
                        raise ValidationError("TLS match must have at least one SNI host", where=mwhere)
                    item["sniHosts"] = sni
                matches.append(item)
            if protocol == "tls" and not matches:
                raise ValidationError("TLS route must have at least one match condition", where=where)
            out.append({"virtual_service": f"{ns}/{name}", "protocol": protocol, "index": i, "hosts": hosts,
                        "gateways": vs_gateways, "match": matches,
                        "route": _destinations(rule.get("route"), ns, suffix, where)})
    return out


def _destinations(route: Any, ns: str, suffix: str, where: str) -> list[dict[str, Any]]:
    if not route:
        raise ValidationError("route is required", where=f"{where}.route")
    dests = []
    for di, d in enumerate(route):
        dest = (d or {}).get("destination") or {}
        if not dest.get("host"):
            raise ValidationError("destination.host is required", where=f"{where}.route[{di}]")
        weight = int(d.get("weight", 0) or 0)
        if weight < 0:
            raise ValidationError(f"weight {weight} < 0", where=f"{where}.route[{di}]")
        port = (dest.get("port") or {}).get("number")
        dests.append({"host": _fqdn(str(dest["host"]), ns, suffix), "subset": str(dest.get("subset") or ""),
                      "port": int(port) if port else None, "weight": weight if len(route) > 1 else 100})
    if len(dests) > 1 and sum(x["weight"] for x in dests) == 0:
        raise ValidationError("total destination weight = 0", where=f"{where}.route")
    return dests



def listener_certificate(tls: Mapping[str, Any] | None, namespace: str,
                         secrets: Mapping[tuple[str, str], Mapping[str, Any]], where: str) -> tuple[str, str, str]:
    """A Gateway API HTTPS (or TLS Terminate) listener's `tls` (mode Terminate, the first certificateRef to a core
    Secret in the Gateway's namespace): (Secret name, "", "") when usable, else ("", ResolvedRefs reason, message)."""
    tls = tls or {}
    mode = str(tls.get("mode") or "Terminate")
    if mode != "Terminate":
        return "", "UnsupportedValue", f"tls.mode {mode} on an HTTPS listener: Passthrough is for a TLS listener " \
            "(protocol: TLS) with TLSRoutes"
    refs = list(tls.get("certificateRefs") or ())
    if not refs:
        return "", "InvalidCertificateRef", "tls.certificateRefs is required for an HTTPS listener"
    ref = refs[0] if isinstance(refs[0], Mapping) else {}
    if str(ref.get("group") or "") != "" or str(ref.get("kind") or "Secret") != "Secret":
        return "", "InvalidCertificateRef", "tls.certificateRefs[0] must name a core Secret"
    if str(ref.get("namespace") or namespace) != namespace:
        return "", "RefNotPermitted", "tls.certificateRefs[0]: a Secret in another namespace is not served locally"
    name = str(ref.get("name") or "")
    try:
        credential(secrets, (namespace,), name, False, f"{where}.tls.certificateRefs[0]")
    except ValidationError as exc:
        return "", "InvalidCertificateRef", str(exc)
    return name, "", ""
