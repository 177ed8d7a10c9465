"""The data plane's admin port is for programs, not web pages: a page's request (Origin, Sec-Fetch-Site), a
DNS-rebinding Host or a form/text body is refused before anything changes; /config_dump never shows private keys."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest

from graylane.mesh.state import MeshOptions

from ..helpers import free_port, svc, vs
from .l4support import CA, gateway, tls_secret


def version(mesh) -> int:
    return int(mesh.get("/ready").json()["version"])


@pytest.mark.parametrize("headers", [
    {"origin": "http://evil.example"},
    {"origin": "null"},
    {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"},
    {"sec-fetch-site": "same-site"},
    {"host": "evil.example"},
    {"host": "rebind.attacker.example:15000"},
])
def test_requests_a_browser_page_could_make_are_refused(mesh, headers):
    before = version(mesh)
    read = httpx.get(f"{mesh.admin}/config_dump", headers=headers, timeout=5)
    assert read.status_code == 403 and "snapshot" not in read.text
    push = httpx.put(f"{mesh.admin}/config", headers=headers, timeout=5,
                     content=json.dumps({"version": before + 100, "listeners": []}))
    assert push.status_code == 403
    assert version(mesh) == before  # nothing was applied


def test_a_snapshot_must_be_json_not_a_form_or_text_a_page_could_post(mesh):
    before = version(mesh)
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = httpx.post(f"{mesh.admin}/config", content=json.dumps({"version": before + 1}),
                       headers={"content-type": ctype}, timeout=5)
        assert r.status_code == 415, (ctype, r.text)
    assert version(mesh) == before


def test_programs_are_served_by_ip_literal_and_localhost(mesh):
    port = urlsplit(mesh.admin).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", "127.0.0.1"):
        r = httpx.get(f"{mesh.admin}/ready", headers={"host": host}, timeout=5)
        assert r.status_code == 200, (host, r.text)
    assert httpx.get(f"{mesh.admin}/ready", headers={"sec-fetch-site": "none"}, timeout=5).status_code == 200


def test_config_dump_redacts_gateway_private_keys(mesh):
    ca = CA()
    cert, key = ca.issue("bookinfo.example.com")
    up = mesh.upstream("productpage-v1")
    server = {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["bookinfo.example.com"],
              "tls": {"mode": "SIMPLE", "credentialName": "bookinfo-cert"}}
    mesh.push([svc("productpage"), gateway("gw", [server]), tls_secret("bookinfo-cert", cert, key),
               vs("bookinfo", ["bookinfo.example.com"], [{"route": [{"destination": {"host": "productpage"}}]}],
                  gateways=["gw"])],
              [mesh.endpoint(up, "productpage")], [], MeshOptions(gateway_port_map={443: free_port()}))
    dump = mesh.get("/config_dump").text
    assert "PRIVATE KEY" not in dump and key.strip().splitlines()[1] not in dump
    creds = json.loads(dump)["snapshot"]["tls_credentials"]
    [cred] = creds.values()
    assert cred["key"] == "<redacted>" and "BEGIN CERTIFICATE" in cred["cert"]
