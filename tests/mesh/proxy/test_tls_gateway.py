"""TLS at the gateway through the real proxy: HTTPS SIMPLE and MUTUAL from kubernetes.io/tls Secrets, httpsRedirect,
SNI selecting a server's certificate, PASSTHROUGH routed by SNI to TLS upstreams; bad credentials left out."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from graylane.errors import ValidationError
from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions

from ..helpers import free_port, svc, vs
from .l4support import CA, EchoServer, client_ssl, echo_endpoint, gateway, server_ssl, service, tls_secret

HOST = "bookinfo.example.com"


@pytest.fixture(scope="module")
def ca():
    return CA()


def https_server(hosts, credential, mode="SIMPLE", number=443, name="https"):
    return {"port": {"number": number, "name": name, "protocol": "HTTPS"}, "hosts": hosts,
            "tls": {"mode": mode, "credentialName": credential}}


def request(port: int, host: str, path: str = "/productpage", ctx: ssl.SSLContext | None = None,
            sni: str | None = None) -> tuple[int, dict[str, str], bytes, dict | None]:
    """One HTTP/1.1 request over TLS (or plain without ctx): status, headers, body, the server's certificate."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with (ctx.wrap_socket(raw, server_hostname=sni or host) if ctx is not None else raw) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        cert = s.getpeercert() if ctx is not None else None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body, cert


def common_name(cert: dict) -> str:
    return next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")


@pytest.fixture
def bookinfo(mesh, ca):
    """productpage behind the gateway; push(servers, secrets) -> {gateway port number: host port}."""
    up = mesh.upstream("productpage-v1")
    ports = {443: free_port(), 80: free_port()}

    def push(servers, secrets, hosts=(HOST,)):
        mesh.push([svc("productpage"), gateway("bookinfo-gateway", servers), *secrets,
                   vs("bookinfo", list(hosts), [{"route": [{"destination": {"host": "productpage"}}]}],
                      gateways=["bookinfo-gateway"])],
                  [mesh.endpoint(up, "productpage")], [], MeshOptions(gateway_port_map=ports))
        return ports

    return push


def test_https_simple_serves_the_secrets_certificate(bookinfo, ca):
    cert, key = ca.issue(HOST)
    ports = bookinfo([https_server([HOST], "bookinfo-cert")], [tls_secret("bookinfo-cert", cert, key)])
    status, headers, body, peer = request(ports[443], HOST, ctx=client_ssl(ca))
    assert status == 200 and json.loads(body)["name"] == "productpage-v1"
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"  # as Envoy sets it behind TLS
    assert headers["server"] == "istio-envoy"
    assert common_name(peer) == HOST
    with pytest.raises(ssl.SSLCertVerificationError):  # another CA's client does not trust it
        request(ports[443], HOST, ctx=client_ssl(CA("Other CA")))


def test_https_redirect_answers_301_to_https(bookinfo, ca):
    cert, key = ca.issue(HOST)
    ports = bookinfo([{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [HOST],
                       "tls": {"httpsRedirect": True}}, https_server([HOST], "bookinfo-cert")],
                     [tls_secret("bookinfo-cert", cert, key)])
    status, headers, _, _ = request(ports[80], HOST, "/productpage?u=normal")
    assert status == 301
    assert headers["location"] == f"https://{HOST}/productpage?u=normal"
    assert request(ports[443], HOST, ctx=client_ssl(ca))[0] == 200


def test_mutual_refuses_a_client_without_certificate(bookinfo, ca, tmp_path):
    cert, key = ca.issue(HOST)
    ports = bookinfo([https_server([HOST], "bookinfo-cert", mode="MUTUAL")],
                     [tls_secret("bookinfo-cert", cert, key, ca=ca.pem)])
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, ValueError)):
        status, *_ = request(ports[443], HOST, ctx=client_ssl(ca))
        raise ValueError(f"answered {status} without a client certificate")
    intruder = CA("Intruder")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, ValueError)):
        status, *_ = request(ports[443], HOST, ctx=client_ssl(ca, intruder.issue("client", client=True), tmp_path))
        raise ValueError(f"answered {status} to a certificate of another CA")
    client = ca.issue("client.example.com", client=True)
    assert request(ports[443], HOST, ctx=client_ssl(ca, client, tmp_path))[0] == 200


def test_optional_mutual_lets_a_client_without_certificate_in_and_checks_one_that_is_sent(bookinfo, ca, tmp_path):
    cert, key = ca.issue(HOST)
    ports = bookinfo([https_server([HOST], "bookinfo-cert", mode="OPTIONAL_MUTUAL")],
                     [tls_secret("bookinfo-cert", cert, key, ca=ca.pem)])
    assert request(ports[443], HOST, ctx=client_ssl(ca))[0] == 200  # no client certificate: let in
    client = ca.issue("client.example.com", client=True)
    assert request(ports[443], HOST, ctx=client_ssl(ca, client, tmp_path))[0] == 200
    intruder = CA("Intruder")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, ValueError)):
        status, *_ = request(ports[443], HOST, ctx=client_ssl(ca, intruder.issue("client", client=True), tmp_path))
        raise ValueError(f"answered {status} to a certificate of another CA")


def test_mutual_ca_from_a_cacert_secret(bookinfo, ca, tmp_path):
    cert, key = ca.issue(HOST)
    cacert = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "bookinfo-cert-cacert", "namespace": "default"}, "stringData": {"cacert": ca.pem}}
    ports = bookinfo([https_server([HOST], "bookinfo-cert", mode="MUTUAL")],
                     [tls_secret("bookinfo-cert", cert, key), cacert])
    client = ca.issue("client.example.com", client=True)
    assert request(ports[443], HOST, ctx=client_ssl(ca, client, tmp_path))[0] == 200


def test_sni_selects_the_servers_certificate(bookinfo, ca):
    a, b = ca.issue("a.example.com"), ca.issue("*.b.example.com")
    ports = bookinfo([https_server(["a.example.com"], "cert-a", name="https-a"),
                      https_server(["*.b.example.com"], "cert-b", name="https-b")],
                     [tls_secret("cert-a", *a), tls_secret("cert-b", *b)],
                     hosts=("a.example.com", "x.b.example.com"))
    status, _, _, peer = request(ports[443], "a.example.com", ctx=client_ssl(ca))
    assert status == 200 and common_name(peer) == "a.example.com"
    status, _, _, peer = request(ports[443], "x.b.example.com", ctx=client_ssl(ca))
    assert status == 200 and common_name(peer) == "*.b.example.com"
    with pytest.raises(ssl.SSLError):  # no server for this name: the handshake is refused
        request(ports[443], "c.example.com", ctx=client_ssl(ca))


def test_passthrough_forwards_tls_to_the_upstream_chosen_by_sni(mesh, ca, tmp_path):
    alpha = mesh.lt.run(EchoServer("alpha").start(server_ssl(*ca.issue("alpha.example.com"), tmp_path, "a")))
    beta = mesh.lt.run(EchoServer("beta").start(server_ssl(*ca.issue("beta.example.com"), tmp_path, "b")))
    port = free_port()
    route = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "sni", "namespace": "default"},
             "spec": {"hosts": ["alpha.example.com", "beta.example.com"], "gateways": ["passthrough"], "tls": [
                 {"match": [{"port": 443, "sniHosts": ["alpha.example.com"]}],
                  "route": [{"destination": {"host": "alpha", "port": {"number": 9443}}}]},
                 {"match": [{"port": 443, "sniHosts": ["beta.example.com"]}],
                  "route": [{"destination": {"host": "beta", "port": {"number": 9443}}}]}]}}
    mesh.push([service("alpha", 9443, "tls"), service("beta", 9443, "tls"),
               gateway("passthrough", [{"port": {"number": 443, "name": "tls", "protocol": "TLS"},
                                        "hosts": ["alpha.example.com", "beta.example.com"],
                                        "tls": {"mode": "PASSTHROUGH"}}]), route],
              [echo_endpoint(alpha, "alpha", "v1", 9443), echo_endpoint(beta, "beta", "v1", 9443)], [],
              MeshOptions(gateway_port_map={443: port}))
    for name in ("alpha", "beta", "alpha"):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client_ssl(ca).wrap_socket(raw, server_hostname=f"{name}.example.com") as s:
            assert common_name(s.getpeercert()) == f"{name}.example.com"  # the upstream's own certificate
            s.sendall(b"ping\n")
            assert s.recv(100) == f"{name} ping\n".encode()
    assert (alpha.connections, beta.connections) == (2, 1)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):  # no tls route for this SNI: closed
        client_ssl(ca).wrap_socket(raw, server_hostname="gamma.example.com")
    raw.close()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # not TLS at all: closed
        s.sendall(b"GET / HTTP/1.1\r\nhost: alpha.example.com\r\n\r\n")
        assert s.recv(100) == b""


# --------------------------------------------------------------------------------------------- bad credentials


def compile_with(servers, secrets, isolate=False):
    return compile_snapshot([svc("productpage"), gateway("bookinfo-gateway", servers), *secrets], [], [],
                            MeshOptions(gateway_port_map={443: 8443, 80: 8080, 8443: 9443}), 1, isolate=isolate)


def test_simple_without_credential_name_names_the_field():
    server = {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [HOST],
              "tls": {"mode": "SIMPLE"}}
    with pytest.raises(ValidationError, match=r"spec.servers\[0\].tls.credentialName: tls.mode SIMPLE needs"):
        compile_with([server], [])


def test_secret_without_key_or_with_bad_pem_names_the_secret_and_key(ca):
    cert, key = ca.issue(HOST)
    no_key = tls_secret("bookinfo-cert", cert, key)
    del no_key["data"]["tls.key"]
    with pytest.raises(ValidationError, match=r"Secret default/bookinfo-cert: tls.key is missing"):
        compile_with([https_server([HOST], "bookinfo-cert")], [no_key])
    with pytest.raises(ValidationError, match=r"Secret default/bookinfo-cert: tls.crt is not a PEM certificate"):
        compile_with([https_server([HOST], "bookinfo-cert")], [tls_secret("bookinfo-cert", "garbage", key)])
    other_key = ca.issue("other")[1]
    with pytest.raises(ValidationError, match=r"tls.crt/tls.key are not a usable certificate and key"):
        compile_with([https_server([HOST], "bookinfo-cert")], [tls_secret("bookinfo-cert", cert, other_key)])
    with pytest.raises(ValidationError, match=r"credentialName: Secret 'missing' not found"):
        compile_with([https_server([HOST], "missing")], [])


def test_a_server_with_an_unusable_secret_is_left_out_and_the_rest_served(ca):
    cert, key = ca.issue(HOST)
    servers = [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [HOST]},
               https_server([HOST], "bookinfo-cert"), https_server([HOST], "broken", number=8443, name="https-2")]
    snap = compile_with(servers, [tls_secret("bookinfo-cert", cert, key), tls_secret("broken", cert, "nope")],
                        isolate=True)
    assert sorted(lst["port"] for lst in snap["listeners"]) == [8080, 8443]  # 9443 (the broken one) left out
    [rejection] = snap["rejected"]
    assert rejection["kind"] == "Gateway" and rejection["name"] == "bookinfo-gateway"
    assert "spec.servers[2]" in rejection["message"] and "tls.key is not a PEM private key" in rejection["message"]
    assert "this server is left out" in rejection["message"]
    assert "nope" not in json.dumps(snap["rejected"])


def test_admission_names_the_missing_credential_field():
    from graylane.resources.admission import admission_findings
    from graylane.resources.load import load_text

    text = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: MUTUAL}
"""
    [doc] = load_text(text, "gw.yaml")
    found = [(tuple(f.path), f.message) for f in admission_findings(doc)]
    assert any(p == ("spec", "servers", 0, "tls", "credentialName") and "MUTUAL TLS requires a server certificate"
               in m for p, m in found), found
    assert any(p == ("spec", "servers", 0, "tls", "caCertificates") and "requires a client CA bundle" in m
               for p, m in found), found


def test_gateway_api_https_listener_terminates_with_its_certificate_ref(mesh, ca):
    up = mesh.upstream("productpage-v1")
    port = free_port()
    cert, key = ca.issue(HOST)
    gw = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
          "metadata": {"name": "bookinfo-gateway", "namespace": "default"},
          "spec": {"gatewayClassName": "istio", "listeners": [{
              "name": "https", "port": 443, "protocol": "HTTPS", "hostname": HOST,
              "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "bookinfo-cert"}]}}]}}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "bookinfo", "namespace": "default"},
             "spec": {"parentRefs": [{"name": "bookinfo-gateway"}], "rules": [{
                 "matches": [{"path": {"type": "PathPrefix", "value": "/productpage"}}],
                 "backendRefs": [{"name": "productpage", "port": 9080}]}]}}
    snap = compile_snapshot([svc("productpage"), gw, route, tls_secret("bookinfo-cert", cert, key)],
                            [mesh.endpoint(up, "productpage")], [], MeshOptions(gateway_port_map={443: port}), 99)
    mesh.put(snap)
    status, _, body, peer = request(port, HOST, ctx=client_ssl(ca))
    assert status == 200 and json.loads(body)["name"] == "productpage-v1" and common_name(peer) == HOST
    [gw_status] = [s for s in snap["gateway_api_status"] if s["kind"] == "Gateway"]
    [listener] = gw_status["status"]["listeners"]
    assert {c["type"]: c["status"] for c in listener["conditions"]}["Programmed"] == "True"


def test_the_kept_snapshot_with_tls_keys_is_readable_by_its_owner_only(tmp_path, ca):
    from graylane.mesh.proxy.lastgood import LastGood

    cert, key = ca.issue(HOST)
    snap = compile_with([https_server([HOST], "bookinfo-cert")], [tls_secret("bookinfo-cert", cert, key)])
    assert snap["tls_credentials"]["default/bookinfo-cert"]["key"] == key  # the proxy needs the key itself
    kept = LastGood(tmp_path)
    kept.write(snap)
    assert kept.path.stat().st_mode & 0o777 == 0o600
    assert kept.load()["tls_credentials"] == snap["tls_credentials"]


def test_tls_server_with_simple_terminates_then_routes_tcp(mesh, ca):
    echo = mesh.lt.run(EchoServer("plain").start())
    port = free_port()
    cert, key = ca.issue("db.example.com")
    route = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "db", "namespace": "default"},
             "spec": {"hosts": ["db.example.com"], "gateways": ["db-gateway"], "tcp": [
                 {"match": [{"port": 5443}], "route": [{"destination": {"host": "db", "port": {"number": 9000}}}]}]}}
    mesh.push([service("db"), tls_secret("db-cert", cert, key), route,
               gateway("db-gateway", [{"port": {"number": 5443, "name": "tls-db", "protocol": "TLS"},
                                       "hosts": ["db.example.com"],
                                       "tls": {"mode": "SIMPLE", "credentialName": "db-cert"}}])],
              [echo_endpoint(echo, "db", "v1")], [], MeshOptions(gateway_port_map={5443: port}))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with client_ssl(ca).wrap_socket(raw, server_hostname="db.example.com") as s:
        assert common_name(s.getpeercert()) == "db.example.com"  # the gateway's certificate, then plain TCP
        s.sendall(b"select 1\n")
        assert s.recv(100) == b"plain select 1\n"
    assert echo.sni == []  # the upstream got plain TCP, not TLS


def test_a_nacked_snapshot_keeps_the_served_certificate(mesh, ca):
    import httpx

    up = mesh.upstream("productpage-v1")
    port = free_port()
    old, new = ca.issue(HOST), ca.issue(HOST, "new.example.com")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        def snapshot(cert, extra_servers=(), version=1):
            return compile_snapshot(
                [svc("productpage"), tls_secret("bookinfo-cert", *cert),
                 gateway("bookinfo-gateway", [https_server([HOST], "bookinfo-cert"), *extra_servers]),
                 vs("bookinfo", [HOST], [{"route": [{"destination": {"host": "productpage"}}]}],
                    gateways=["bookinfo-gateway"])],
                [mesh.endpoint(up, "productpage")], [],
                MeshOptions(gateway_port_map={443: port, 8080: busy.getsockname()[1]}), version)
        mesh.put(snapshot(old, version=1000))
        http_on_busy = {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": [HOST]}
        refused = httpx.put(f"{mesh.admin}/config", json=snapshot(new, [http_on_busy], 1001), timeout=10)
        assert refused.status_code == 400 and "cannot bind" in refused.json()["reason"]
        status, _, _, peer = request(port, HOST, ctx=client_ssl(ca))
        assert status == 200
        assert [v for k, v in peer["subjectAltName"]] == [HOST]  # still the old certificate, not the NACKed one
    finally:
        busy.close()
