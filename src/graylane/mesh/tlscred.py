"""TLS credentials from Kubernetes Secrets, as Istio's gateways read them, and the server SSLContext built from them.

A `credentialName` names a Secret in the Gateway's namespace (or `istio-system`, where Istio's ingress gateway
runs): `kubernetes.io/tls` with `tls.crt`/`tls.key` (and `ca.crt` for MUTUAL), or an Opaque one with
`cert`/`key`/`cacert`; for MUTUAL the CA may also come from a Secret `<name>-cacert`. Values are hostile input:
sizes are bounded, base64 and PEM are checked, and every error names the Secret and the key. Used by the compiler
(to refuse an unusable credential, naming the field) and by the proxy (to build the context it serves).
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any

from graylane.errors import ValidationError

MAX_VALUE = 1024 * 1024  # a Kubernetes Secret holds at most 1 MiB
CERT_KEYS = ("tls.crt", "cert")
KEY_KEYS = ("tls.key", "key")
CA_KEYS = ("ca.crt", "cacert")
SECRET_TYPES = ("kubernetes.io/tls", "Opaque")


def secret_values(secret: Mapping[str, Any], where: str) -> dict[str, str]:
    """A Secret's `data` (base64) and `stringData` merged as text; bad base64, non-text or oversize values refused."""
    out: dict[str, str] = {}
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise ValidationError("data must be a map of base64 strings", where=where)
    for key, value in data.items():
        if not isinstance(value, str) or len(value) > MAX_VALUE * 4 // 3 + 4:
            raise ValidationError(f"data[{key!r}] must be a base64 string of at most 1 MiB", where=where)
        try:
            raw = base64.b64decode(value, validate=True)
            out[str(key)] = raw.decode("ascii")
        except (binascii.Error, ValueError):
            raise ValidationError(f"data[{key!r}] is not base64 of PEM text", where=where) from None
    string_data = secret.get("stringData") or {}
    if not isinstance(string_data, Mapping):
        raise ValidationError("stringData must be a map of strings", where=where)
    for key, value in string_data.items():
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise ValidationError(f"stringData[{key!r}] must be a string of at most 1 MiB", where=where)
        out[str(key)] = value
    return out


def _first(values: Mapping[str, str], keys: tuple[str, ...]) -> str:
    for k in keys:
        if values.get(k):
            return values[k]
    return ""


def credential(secrets: Mapping[tuple[str, str], Mapping[str, Any]], namespaces: tuple[str, ...], name: str,
               mutual: bool, where: str) -> tuple[str, dict[str, str]]:
    """(ns/name, {cert, key, ca}) for a `credentialName`, checked as a server context; ValidationError otherwise."""
    found = next(((ns, secrets[(ns, name)]) for ns in namespaces if (ns, name) in secrets), None)
    if found is None:
        raise ValidationError(f"Secret {name!r} not found in namespace {' or '.join(namespaces)}",
                              where=f"{where}.credentialName")
    ns, secret = found
    swhere = f"Secret {ns}/{name}"
    stype = str(secret.get("type") or "Opaque")
    if stype not in SECRET_TYPES:
        raise ValidationError(f"type {stype!r} cannot hold a TLS credential (use kubernetes.io/tls)", where=swhere)
    values = secret_values(secret, swhere)
    cert, key = _first(values, CERT_KEYS), _first(values, KEY_KEYS)
    if not cert:
        raise ValidationError("tls.crt is missing (a kubernetes.io/tls Secret needs tls.crt and tls.key)", where=swhere)
    if not key:
        raise ValidationError("tls.key is missing (a kubernetes.io/tls Secret needs tls.crt and tls.key)", where=swhere)
    ca = _first(values, CA_KEYS)
    if mutual and not ca:
        extra = secrets.get((ns, f"{name}-cacert"))
        if extra is not None:
            ca = _first(secret_values(extra, f"Secret {ns}/{name}-cacert"), CA_KEYS)
        if not ca:
            raise ValidationError(f"MUTUAL needs a CA: ca.crt in Secret {ns}/{name} or a Secret {name}-cacert",
                                  where=f"{where}.credentialName")
    pem = {"cert": cert, "key": key, "ca": ca if mutual else ""}
    server_context(pem["cert"], pem["key"], pem["ca"], swhere)
    return f"{ns}/{name}", pem


def server_context(cert: str, key: str, ca: str = "", where: str = "credential") -> ssl.SSLContext:
    """A TLS server context for a PEM certificate chain and key (client certificates required when `ca` is set)."""
    if "-----BEGIN CERTIFICATE-----" not in cert:
        raise ValidationError("tls.crt is not a PEM certificate (no BEGIN CERTIFICATE block)", where=where)
    if "PRIVATE KEY-----" not in key:
        raise ValidationError("tls.key is not a PEM private key (no BEGIN ... PRIVATE KEY block)", where=where)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # Envoy's server default
    # load_cert_chain reads files only: a private folder (0700) for the moment it reads them.
    with tempfile.TemporaryDirectory(prefix="graylane-tls-") as folder:
        cert_path, key_path = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise ValidationError(f"tls.crt/tls.key are not a usable certificate and key: {exc.reason or exc}",
                                  where=where) from None
    if ca:
        if "-----BEGIN CERTIFICATE-----" not in ca:
            raise ValidationError("ca.crt is not a PEM certificate (no BEGIN CERTIFICATE block)", where=where)
        try:
            ctx.load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError) as exc:
            raise ValidationError(f"ca.crt is not a usable CA certificate: {exc}", where=where) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
