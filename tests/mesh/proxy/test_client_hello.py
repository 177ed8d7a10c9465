"""The passthrough SNI reader on real ClientHellos (the ssl module's, TLS 1.2 and 1.3) and on hostile bytes."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graylane.mesh.proxy.tls import MAX_HELLO, HelloError, client_hello_sni


def hello(server_name: str | None, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> bytes:
    """The first flight of a real client handshake (what the proxy reads before it forwards)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_real_client_hellos(version):
    data = hello("Alpha.Example.COM", version)
    assert client_hello_sni(data) == "alpha.example.com"
    assert client_hello_sni(hello(None, version)) == ""  # no server_name extension
    for cut in (0, 4, 5, 40, len(data) - 1):  # split by TCP: wait for more
        assert client_hello_sni(data[:cut]) is None


def test_not_tls_and_oversize_records_are_refused():
    with pytest.raises(HelloError):
        client_hello_sni(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
    with pytest.raises(HelloError):
        client_hello_sni(b"\x16\x03\x01" + (MAX_HELLO).to_bytes(2, "big"))
    data = bytearray(hello("a.example.com"))
    data[5] = 0x02  # a ServerHello where a ClientHello belongs
    with pytest.raises(HelloError):
        client_hello_sni(bytes(data))


BASE = hello("a.example.com")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=255))
def test_hostile_bytes_never_crash_the_reader(noise, at, byte):
    mutated = BASE[:at % len(BASE)] + noise  # a real prefix, then anything
    i = at % len(BASE)
    flipped = BASE[:i] + bytes([byte]) + BASE[i + 1:]  # one length or type byte wrong
    for data in (noise, mutated, flipped, b"\x16\x03\x01" + len(noise).to_bytes(2, "big") + noise):
        try:
            got = client_hello_sni(data)
        except HelloError:
            continue
        assert got is None or (isinstance(got, str) and len(got) <= 253)
