"""Tests for reactor.proxyproto: the sans-IO PROXY protocol v1/v2 parser."""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.proxyproto import (
    MAX_V2_LENGTH,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
)

# --- an encoder, for the tests only ---------------------------------------------------

_V2_FAMILY = {socket.AF_UNSPEC: 0, socket.AF_INET: 1, socket.AF_INET6: 2, socket.AF_UNIX: 3}
_V2_PROTOCOL = {0: 0, int(socket.SOCK_STREAM): 1, int(socket.SOCK_DGRAM): 2}


def encode_v1(family: int, source: Any = None, destination: Any = None) -> bytes:
    """A version 1 header (``PROXY UNKNOWN`` for AF_UNSPEC)."""
    if family == socket.AF_UNSPEC:
        return b"PROXY UNKNOWN\r\n"
    name = "TCP4" if family == socket.AF_INET else "TCP6"
    return f"PROXY {name} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode("ascii")


def encode_v2(
    family: int,
    source: Any = None,
    destination: Any = None,
    *,
    command: str = "PROXY",
    protocol: int = int(socket.SOCK_STREAM),
    tlvs: bytes = b"",
) -> bytes:
    """A version 2 header, with ``tlvs`` appended after the addresses."""
    if family in (socket.AF_INET, socket.AF_INET6):
        body = socket.inet_pton(family, source[0]) + socket.inet_pton(family, destination[0])
        body += struct.pack("!HH", source[1], destination[1])
    elif family == socket.AF_UNIX:
        body = os.fsencode(source).ljust(108, b"\0") + os.fsencode(destination).ljust(108, b"\0")
    else:
        body = b""
    body += tlvs
    ver_cmd = 0x20 | (0 if command == "LOCAL" else 1)
    fam = _V2_FAMILY[family] << 4 | _V2_PROTOCOL[protocol]
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body


def tlv(kind: int, value: bytes) -> bytes:
    """One type-length-value record."""
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


# --- vectors ---------------------------------------------------------------------------


def test_v1_tcp4_vector() -> None:
    """The spec's TCP4 example parses to the client and the address it reached."""
    data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"
    header = parse_header(data)
    assert header == ProxyHeader(
        1, "PROXY", socket.AF_INET, socket.SOCK_STREAM, ("192.168.0.1", 56324), ("192.168.0.11", 443), 47
    )
    assert data[header.consumed :] == b"GET / HTTP/1.1\r\n"
    assert header.has_address


def test_v1_tcp6_vector() -> None:
    """TCP6 addresses are normalised and given as 4-tuples, as getpeername() does."""
    header = parse_header(b"PROXY TCP6 2001:db8:0:0::1 ::1 1 65535\r\n")
    assert header is not None
    assert header.family == socket.AF_INET6
    assert header.source == ("2001:db8::1", 1, 0, 0)
    assert header.destination == ("::1", 65535, 0, 0)


def test_v1_unknown_keeps_no_address() -> None:
    """PROXY UNKNOWN (with or without the rest of the line) carries no client."""
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
        header = parse_header(line + b"x")
        assert header is not None
        assert (header.family, header.source, header.destination, header.consumed) == (
            socket.AF_UNSPEC,
            None,
            None,
            len(line),
        )
        assert not header.has_address


def test_v1_longest_header_is_accepted() -> None:
    """A 107-byte header (the spec's longest) parses; one byte more without a line end is refused."""
    host = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    data = f"PROXY UNKNOWN {host} {host} 65535 65535\r\n".encode()  # the spec's worst case
    assert len(data) == V1_MAX_LENGTH
    assert parse_header(data) is not None
    assert parse_header(encode_v1(socket.AF_INET6, (host, 65535), (host, 65535))) is not None
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        parse_header(data[:-2] + b" \r\n")


def test_v1_too_long_without_end_is_an_error_at_once() -> None:
    """107 bytes without a line end is an error before any more arrives."""
    assert parse_header(b"PROXY TCP4 " + b"1" * 90) is None
    with pytest.raises(ProxyProtocolError):
        parse_header(b"PROXY TCP4 " + b"1" * (V1_MAX_LENGTH - 11))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "\\\\r\\\\n"),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "IPv4"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "IPv4"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "IPv6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1_0 2\r\n", "port"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "fields"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "fields"),
        (b"PROXY TCP4 1.2.3.\xff", "0xff"),
        (b"GET / HTTP/1.1\r\n", "does not start"),
        (b"PROXX", "does not start"),
    ],
)
def test_v1_malformed(line: bytes, reason: str) -> None:
    """Each malformed v1 header is a ProxyProtocolError that says what is wrong."""
    with pytest.raises(ProxyProtocolError, match=reason):
        parse_header(line)


def test_v2_inet_vector() -> None:
    """A v2 IPv4 header, written out byte by byte, parses."""
    data = V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x30\x39\x01\xbb" + b"hello"
    header = parse_header(data)
    assert header == ProxyHeader(
        2, "PROXY", socket.AF_INET, socket.SOCK_STREAM, ("10.0.0.1", 12345), ("10.0.0.2", 443), 28
    )
    assert data[header.consumed :] == b"hello"


def test_v2_local_uses_no_address() -> None:
    """LOCAL (a balancer's health check) parses with no addresses, whatever its family."""
    data = encode_v2(socket.AF_INET, ("1.2.3.4", 1), ("5.6.7.8", 2), command="LOCAL")
    header = parse_header(data)
    assert header is not None
    assert (header.command, header.source, header.destination) == ("LOCAL", None, None)
    bare = V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert parse_header(bare) == ProxyHeader(2, "LOCAL", socket.AF_UNSPEC, 0, None, None, 16)


def test_v2_unspec_and_unix() -> None:
    """UNSPEC carries no address; AF_UNIX gives paths (abstract names as bytes)."""
    header = parse_header(encode_v2(socket.AF_UNSPEC, protocol=0))
    assert header is not None and header.source is None and header.command == "PROXY"
    header = parse_header(encode_v2(socket.AF_UNIX, "/run/client.sock", "/run/server.sock"))
    assert header is not None
    assert (header.source, header.destination) == ("/run/client.sock", "/run/server.sock")
    abstract = encode_v2(socket.AF_UNIX, "\0name", "/s")
    header = parse_header(abstract)
    assert header is not None and header.source == b"\0name"


def test_v2_tlvs_are_skipped() -> None:
    """TLVs after the addresses count in consumed and change nothing else."""
    tlvs = tlv(0x01, b"h2") + tlv(0x04, b"") + tlv(0x20, b"\x07" + b"x" * 40)
    plain = parse_header(encode_v2(socket.AF_INET6, ("::1", 1), ("::2", 2)))
    data = encode_v2(socket.AF_INET6, ("::1", 1), ("::2", 2), tlvs=tlvs)
    header = parse_header(data + b"rest")
    assert header is not None and plain is not None
    assert header.consumed == len(data) == plain.consumed + len(tlvs)
    assert header.source == plain.source == ("::1", 1, 0, 0)


def test_v2_length_bound_refuses_before_the_body() -> None:
    """An announced length above the bound is refused from the 16 fixed bytes alone."""
    fixed = V2_SIGNATURE + b"\x21\x11" + (MAX_V2_LENGTH + 1).to_bytes(2, "big")
    with pytest.raises(ProxyProtocolError, match="more than the limit"):
        parse_header(fixed)
    assert parse_header(fixed, max_v2_length=MAX_V2_LENGTH + 1) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (V2_SIGNATURE + b"\x11", "version 1"),
        (V2_SIGNATURE + b"\x22", "unknown command"),
        (V2_SIGNATURE + b"\x21\x41", "family"),
        (V2_SIGNATURE + b"\x21\x13", "family or protocol"),
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\0" * 4, "too short"),
        (V2_SIGNATURE + b"\x21\x21\x00\x0c" + b"\0" * 12, "too short"),
        (b"\r\n\r\n\x00\r\nQUIX", "does not start"),
    ],
)
def test_v2_malformed(data: bytes, reason: str) -> None:
    """Each malformed v2 header is a ProxyProtocolError as soon as the wrong byte is there."""
    with pytest.raises(ProxyProtocolError, match=reason):
        parse_header(data)


def test_prefixes_need_more() -> None:
    """Every proper prefix of a valid header, and nothing at all, asks for more bytes."""
    for data in (
        encode_v1(socket.AF_INET, ("1.2.3.4", 5), ("6.7.8.9", 10)),
        encode_v2(socket.AF_INET, ("1.2.3.4", 5), ("6.7.8.9", 10), tlvs=tlv(1, b"x")),
    ):
        for end in range(len(data)):
            assert parse_header(data[:end]) is None, end


# --- properties --------------------------------------------------------------------------

ports = st.integers(0, 65535)
# Written as inet_ntop writes them (which is what the parser returns).
ipv4 = st.builds(lambda raw: socket.inet_ntop(socket.AF_INET, raw), st.binary(min_size=4, max_size=4))
ipv6 = st.builds(lambda raw: socket.inet_ntop(socket.AF_INET6, raw), st.binary(min_size=16, max_size=16))
paths = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=107)
tlv_blocks = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4).map(
    lambda items: b"".join(tlv(kind, value) for kind, value in items)
)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, ProxyHeader]:
    """A valid encoded header (v1 or v2, any family and command) and what it must parse to."""
    version = draw(st.sampled_from([1, 2]))
    family = draw(
        st.sampled_from(
            [socket.AF_INET, socket.AF_INET6, socket.AF_UNSPEC] + ([socket.AF_UNIX] if version == 2 else [])
        )
    )
    source: Any = None
    destination: Any = None
    if family in (socket.AF_INET, socket.AF_INET6):
        hosts = ipv4 if family == socket.AF_INET else ipv6
        tail = (0, 0) if family == socket.AF_INET6 else ()
        source = (draw(hosts), draw(ports), *tail)
        destination = (draw(hosts), draw(ports), *tail)
    elif family == socket.AF_UNIX:
        source, destination = draw(paths), draw(paths)
    if version == 1:
        data = encode_v1(family, source, destination)
        protocol = 0 if family == socket.AF_UNSPEC else int(socket.SOCK_STREAM)
        return data, ProxyHeader(1, "PROXY", family, protocol, source, destination, len(data))
    command = draw(st.sampled_from(["PROXY", "LOCAL"]))
    protocol = draw(st.sampled_from([0, int(socket.SOCK_STREAM), int(socket.SOCK_DGRAM)]))
    data = encode_v2(family, source, destination, command=command, protocol=protocol, tlvs=draw(tlv_blocks))
    if command == "LOCAL":
        source = destination = None
    return data, ProxyHeader(2, command, family, protocol, source, destination, len(data))


@given(headers(), st.binary(max_size=64))
def test_round_trip(case: tuple[bytes, ProxyHeader], payload: bytes) -> None:
    """What the encoder writes, the parser reads back, and the payload after it is untouched."""
    data, expected = case
    header = parse_header(data + payload)
    assert header == expected
    assert (data + payload)[header.consumed :] == payload


@given(headers(), st.binary(max_size=32), st.lists(st.integers(0, 400), max_size=6))
def test_any_split_gives_the_same_result(case: tuple[bytes, ProxyHeader], payload: bytes, cuts: list[int]) -> None:
    """Fed in pieces (re-parsing the buffer after each, as the layer does), the result is the same."""
    data, expected = case
    stream = data + payload
    points = sorted({min(cut, len(stream)) for cut in cuts} | {len(stream)})
    buffer = b""
    start = 0
    result = None
    for point in points:
        buffer += stream[start:point]
        start = point
        result = parse_header(buffer)
        if result is not None:
            break
        assert len(buffer) < len(data)
    assert result == expected


@given(st.binary(max_size=300))
def test_garbage_is_an_error_not_a_crash(data: bytes) -> None:
    """Any bytes give a header, None or ProxyProtocolError; never another exception."""
    try:
        header = parse_header(data)
    except ProxyProtocolError:
        return
    if header is not None:
        assert 0 < header.consumed <= len(data)


@given(headers(), st.integers(0, 300), st.binary(min_size=1, max_size=8))
def test_corrupted_headers_never_crash(case: tuple[bytes, ProxyHeader], where: int, junk: bytes) -> None:
    """A valid header with bytes overwritten parses, waits or fails cleanly."""
    data = bytearray(case[0])
    where %= len(data)
    data[where : where + len(junk)] = junk
    try:
        header = parse_header(bytes(data))
    except ProxyProtocolError:
        return
    if header is not None:
        assert header.consumed <= len(data)


@given(st.binary(max_size=64))
def test_v2_signature_then_garbage(rest: bytes) -> None:
    """After a v2 signature, anything is a header, a wait or a clean error."""
    try:
        parse_header(V2_SIGNATURE + rest)
    except ProxyProtocolError:
        pass
