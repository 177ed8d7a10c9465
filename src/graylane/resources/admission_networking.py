"""Admission checks of Gateway, ServiceEntry and EnvoyFilter, with Istio's messages."""

from __future__ import annotations

from typing import Any

from graylane.resources.admission_base import (
    GATEWAY_PROTOCOLS,
    TLS_PROTOCOLS,
    WILDCARD_DOMAIN,
    Checks,
    as_map,
    is_dns1123_label,
    items_of,
)
from graylane.resources.admission_envoyfilter import check_local_envoy_filter
from graylane.resources.messages import go_quote


def check_gateway(c: Checks, spec: dict[str, Any]) -> None:
    if not is_dns1123_label(c.doc.name):
        c.error(("metadata", "name"), f"invalid gateway name: {go_quote(c.doc.name)}")
    servers = spec.get("servers") or []
    if not servers:
        c.error(("spec", "servers") if "servers" in spec else ("spec",), "gateway must have at least one server")
    port_names: set[str] = set()
    for i, server in items_of(servers):
        server, path = as_map(server), ("spec", "servers", i)
        hosts = server.get("hosts") or []
        if not hosts:
            c.error(path, "server config must contain at least one host")
        for j, host in enumerate(hosts):
            ns, slash, dns = host.rpartition("/")
            if slash and ns not in ("*", ".", "~") and not is_dns1123_label(ns):
                c.error((*path, "hosts", j), f"invalid namespace value {go_quote(ns)} in host {go_quote(host)}")
            if not WILDCARD_DOMAIN.match(dns):
                c.error((*path, "hosts", j), f"invalid host {dns}: must be a DNS name, optionally with a leading *.")
        port = as_map(server.get("port"))
        protocol = str(port.get("protocol", "")).upper()
        if protocol not in GATEWAY_PROTOCOLS:
            c.error((*path, "port", "protocol"), f"invalid protocol {go_quote(port.get('protocol'))}, supported "
                    "protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP")
        if not port.get("name"):
            c.error((*path, "port"), "port name must be set")
        elif port["name"] in port_names:
            c.error((*path, "port", "name"), f"port names in servers must be unique: duplicate name {port['name']}")
        else:
            port_names.add(port["name"])
        c.port((*path, "port", "number"), port.get("number"))
        tls = server.get("tls")
        if protocol in TLS_PROTOCOLS and tls is None:
            c.error(path, "server must have TLS settings for HTTPS/TLS protocols")
        elif protocol not in TLS_PROTOCOLS and tls is not None and set(as_map(tls)) - {"httpsRedirect"}:
            c.warn((*path, "tls"), "tls settings are only used by HTTPS/TLS servers; plain servers may only set "
                                   "httpsRedirect")
        if tls is not None:
            _check_server_tls(c, (*path, "tls"), as_map(tls))


def _check_server_tls(c: Checks, path: tuple[Any, ...], tls: dict[str, Any]) -> None:
    """Istio's validateTLSOptions for SIMPLE/MUTUAL: credentialName, or the file fields it replaces."""
    mode = str(tls.get("mode") or "").upper()
    if mode not in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") or tls.get("credentialName") or tls.get("credentialNames"):
        return
    if not tls.get("privateKey"):
        c.error((*path, "credentialName"), f"{mode} TLS requires a private key (set credentialName to a "
                                            "kubernetes.io/tls Secret)")
    if not tls.get("serverCertificate"):
        c.error((*path, "credentialName"), f"{mode} TLS requires a server certificate (set credentialName to a "
                                            "kubernetes.io/tls Secret)")
    if mode != "SIMPLE" and not tls.get("caCertificates"):
        c.error((*path, "caCertificates"), f"{mode} TLS requires a client CA bundle")
    if tls.get("privateKey") or tls.get("serverCertificate"):
        c.warn((*path, "serverCertificate"), "certificate files are not read by the local mesh; only credentialName "
                                             "(a kubernetes.io/tls Secret) is served")


def check_service_entry(c: Checks, spec: dict[str, Any]) -> None:
    hosts = spec.get("hosts") or []
    if not hosts:
        c.error(("spec",), "service entry must have at least one host")
    for i, host in enumerate(hosts):
        if host == "*":
            c.error(("spec", "hosts", i), f"invalid host {host}")
        elif not WILDCARD_DOMAIN.match(host):
            c.error(("spec", "hosts", i), f"invalid host {host}: must be a DNS name, optionally with a leading *.")
    if spec.get("workloadSelector") is not None and spec.get("endpoints") is not None:
        c.error(("spec",), "only one of WorkloadSelector or Endpoints is allowed in Service Entry")
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in items_of(spec.get("ports")):
        port, path = as_map(port), ("spec", "ports", i)
        name, number = port.get("name", ""), port.get("number")
        if name in names:
            c.error((*path, "name"), f"service entry port name {go_quote(name)} already defined")
        if number in numbers:
            c.error((*path, "number"), f"service entry port {number} already defined")
        names.add(name)
        numbers.add(number)
        if not is_dns1123_label(name):
            c.error((*path, "name"), f"invalid port name: {name}")
        c.port((*path, "number"), number)
    if spec.get("resolution", "NONE") == "NONE" and spec.get("endpoints"):
        c.error(("spec", "endpoints"), "no endpoints should be provided for resolution type none")
    for i, endpoint in items_of(spec.get("endpoints")):
        endpoint = as_map(endpoint)
        if not endpoint.get("address") and not endpoint.get("network"):
            c.error(("spec", "endpoints", i), "address is required")
        for name, number in as_map(endpoint.get("ports")).items():
            if name not in names:
                c.error(("spec", "endpoints", i, "ports", name), f"endpoint port {number} is not defined by the "
                                                                 "service entry")


def check_envoy_filter(c: Checks, spec: dict[str, Any]) -> None:
    if spec.get("workloadSelector") is not None and spec.get("targetRefs"):
        c.error(("spec",), "only one of targetRefs or workloadSelector can be set")
    for i, patch in items_of(spec.get("configPatches")):
        patch, path = as_map(patch), ("spec", "configPatches", i)
        if not patch.get("applyTo"):
            c.error(path, "Envoy filter: missing applyTo")
        if patch.get("patch") is None:
            c.error(path, "Envoy filter: missing patch")
        elif not as_map(patch["patch"]).get("operation"):
            c.error((*path, "patch"), "Envoy filter: missing patch operation")
    check_local_envoy_filter(c, spec)
