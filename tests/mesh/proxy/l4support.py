"""Helpers of the TCP/TLS proxy tests: echo servers (plain and TLS), Istio's tcp-echo resources, test certificates."""

from __future__ import annotations

import asyncio
import base64
import datetime
import socket
import ssl
from typing import Any

from graylane.mesh.state import Endpoint


class Echo(asyncio.Protocol):
    """Istio's tcp-echo: answers each line with `<name> <line>`."""

    def __init__(self, name: str, server: EchoServer) -> None:
        self.name = name
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""  # a line not complete yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1
        self.server.open += 1
        if transport.get_extra_info("ssl_object") is not None:
            self.server.sni.append(transport.get_extra_info("ssl_object").server_hostname or "")

    def data_received(self, data: bytes) -> None:
        self.server.received += len(data)
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.transport.write(f"{self.name} ".encode() + line + b"\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open -= 1


class EchoServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.connections = 0
        self.open = 0
        self.received = 0
        self.sni: list[str] = []

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> EchoServer:
        srv = await asyncio.get_running_loop().create_server(lambda: Echo(self.name, self), "127.0.0.1", 0,
                                                             ssl=ssl_ctx)
        self.port = srv.sockets[0].getsockname()[1]
        return self


def echo_endpoint(server: EchoServer, app: str, version: str, container_port: int = 9000) -> Endpoint:
    return Endpoint("default", f"{app}-{version}-0", {"app": app, "version": version}, "127.0.0.1", server.port,
                    container_port, True, f"{app}-{version}", app)


def service(name: str, port: int = 9000, port_name: str = "tcp") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "name": port_name, "targetPort": port}]}}


def gateway(name: str, servers: list[dict[str, Any]], ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}}


def tls_secret(name: str, cert: str, key: str, ca: str = "", ns: str = "default") -> dict[str, Any]:
    data = {"tls.crt": cert, "tls.key": key, **({"ca.crt": ca} if ca else {})}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


# --------------------------------------------------------------------------------------------- certificates


class CA:
    """A test certificate authority (cryptography): issues server and client certificates as PEM text."""

    def __init__(self, name: str = "Graylane Test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, *names: str, client: bool = False) -> tuple[str, str]:
        """(certificate PEM, key PEM) for `names` (DNS SANs)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(self.key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def server_ssl(cert: str, key: str, tmp_path: Any, name: str = "srv") -> ssl.SSLContext:
    certfile, keyfile = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    certfile.write_text(cert)
    keyfile.write_text(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_ssl(ca: CA, cert: tuple[str, str] | None = None, tmp_path: Any = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.pem)
    if cert is not None:
        certfile, keyfile = tmp_path / "client.crt", tmp_path / "client.key"
        certfile.write_text(cert[0])
        keyfile.write_text(cert[1])
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def talk(port: int, message: bytes = b"hello") -> bytes:
    """One line to a TCP listener, the echo's line back (b"" when the proxy closed or reset the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        try:
            s.sendall(message + b"\n")
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:  # closed with our line unread: a reset, not a FIN
            pass
        return data
