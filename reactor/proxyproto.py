"""Sans-IO parsing of the PROXY protocol header (HAProxy's spec, versions 1 and 2).

Why this module exists
----------------------
Behind a TCP load balancer (nginx ``stream``, HAProxy in TCP mode) every
connection comes from the balancer, so the server logs and checks the
balancer's address, not the client's.  The PROXY protocol fixes that: the
balancer sends one header before the client's bytes, naming the client.  It
is a one-way, unauthenticated statement, so a server must read it only from
connections it trusts (`reactor.transport.proxy` checks that); this module
only parses.

As `reactor.framing`, it takes bytes and returns a value: no socket, no
clock, no reactor, nothing of this package.  `parse_header` is given
everything received so far and answers one of three ways:

* a `ProxyHeader`: the header is complete; ``consumed`` bytes of the input
  were the header, and what follows belongs to the application;
* ``None``: the input is a valid beginning, send more;
* `ProxyProtocolError`: this is not a PROXY header, or a malformed one.
  The answer is certain as soon as a byte is wrong: a peer is not left
  waiting for bytes that could never make the header valid.

What can go wrong, and what we chose
------------------------------------
* **Unbounded input.**  A version 1 header is at most 107 bytes with its
  ``\\r\\n`` (the spec's limit); a version 2 header announces its length in
  its first 16 bytes, and one longer than ``max_v2_length`` (4 KiB by
  default: addresses plus the TLVs real balancers send fit with room to
  spare) is refused at once, before its body arrives.
* **Rescanning.**  The caller re-parses its buffer after each read.  That is
  quadratic in the header's size only, and the size is bounded as above.
* **Trusting the header's syntax.**  Addresses are checked with
  ``inet_pton`` and ports as decimal digits (``int()`` alone would take
  ``"+1_0"``); a version 1 line must be ASCII and end with ``\\r\\n``.
* **LOCAL and UNSPEC.**  A version 2 ``LOCAL`` header (a balancer's own
  health check) and an address family of ``UNSPEC`` (``PROXY UNKNOWN`` in
  version 1) carry no client: ``source`` and ``destination`` are None, and
  the caller keeps the connection's real addresses, as the spec says.
* **TLVs** (version 2 extensions after the addresses) are skipped: their
  bytes are counted in ``consumed`` and not interpreted.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ProxyHeader",
    "ProxyProtocolError",
    "parse_header",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "MAX_V2_LENGTH",
]

#: The longest version 1 header, ``\r\n`` included (the spec's limit).
V1_MAX_LENGTH = 107
#: The 12 bytes that open a version 2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Default bound on a version 2 header's announced length (addresses and TLVs), in bytes.
MAX_V2_LENGTH = 4096

_V1_SIGNATURE = b"PROXY "
_V2_FIXED = 16
_V2_FAMILIES: dict[int, int] = {0: socket.AF_UNSPEC, 1: socket.AF_INET, 2: socket.AF_INET6, 3: socket.AF_UNIX}
_V2_PROTOCOLS = {0: 0, 1: int(socket.SOCK_STREAM), 2: int(socket.SOCK_DGRAM)}
_V2_ADDRESS_LENGTH: dict[int, int] = {socket.AF_UNSPEC: 0, socket.AF_INET: 12, socket.AF_INET6: 36, socket.AF_UNIX: 216}
_V1_FAMILIES: dict[str, int] = {"TCP4": socket.AF_INET, "TCP6": socket.AF_INET6}
_PORTS = struct.Struct("!HH")


class ProxyProtocolError(ValueError):
    """The input is not a PROXY protocol header, or a malformed one (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY protocol header.

    ``version`` is 1 or 2; ``command`` is ``"PROXY"`` (a relayed connection)
    or ``"LOCAL"`` (version 2 only: the balancer's own connection, e.g. a
    health check).  ``family`` is ``socket.AF_INET``, ``AF_INET6``,
    ``AF_UNIX`` or ``AF_UNSPEC``; ``protocol`` is ``socket.SOCK_STREAM``,
    ``SOCK_DGRAM`` or 0 (unspecified).  ``source`` is the client's address
    and ``destination`` the address it connected to, in the form of a
    socket's ``getpeername()``: ``(host, port)`` for IPv4, ``(host, port, 0,
    0)`` for IPv6, a path for Unix (bytes for an abstract name); None when
    the header carries no address (LOCAL, UNSPEC, ``PROXY UNKNOWN``).
    ``consumed`` is the header's length in bytes: the application's data
    starts there.
    """

    version: int
    command: str
    family: int
    protocol: int
    source: Any
    destination: Any
    consumed: int

    @property
    def has_address(self) -> bool:
        """True when the header names the client (so its addresses replace the connection's)."""
        return self.source is not None


def parse_header(data: bytes | bytearray | memoryview, max_v2_length: int = MAX_V2_LENGTH) -> ProxyHeader | None:
    """Parse the PROXY header at the start of ``data``: a `ProxyHeader`, None (need more) or `ProxyProtocolError`.

    ``data`` is everything received so far on the connection; bytes after
    the header are left alone (see ``ProxyHeader.consumed``).  Both versions
    are recognised by their signature.
    """
    data = bytes(data)
    n = len(data)
    if data[:1] == b"P":
        if n < len(_V1_SIGNATURE):
            if _V1_SIGNATURE.startswith(data):
                return None
        elif data.startswith(_V1_SIGNATURE):
            return _parse_v1(data)
    elif data[:1] == b"\r":
        if n < len(V2_SIGNATURE):
            if V2_SIGNATURE.startswith(data):
                return None
        elif data.startswith(V2_SIGNATURE):
            return _parse_v2(data, max_v2_length)
    elif not data:
        return None
    raise ProxyProtocolError("the connection does not start with a PROXY protocol header")


# ------------------------------------------------------------------ version 1


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes")
        _check_v1_ascii(data)
        return None
    if data[end - 1 : end] != b"\r":
        raise ProxyProtocolError("PROXY v1 header does not end with \\r\\n")
    line = data[: end - 1]
    _check_v1_ascii(line)
    parts = line.decode("ascii").split(" ")
    consumed = end + 1
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        # The spec: the receiver ignores the rest of the line and uses the real addresses.
        return ProxyHeader(1, "PROXY", socket.AF_UNSPEC, 0, None, None, consumed)
    if len(parts) != 6:
        raise ProxyProtocolError(f"PROXY v1 header has {len(parts)} fields, expected 6: {line!r}")
    family = _V1_FAMILIES.get(parts[1])
    if family is None:
        raise ProxyProtocolError(f"PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN, got {parts[1]!r}")
    source_host = _v1_host(family, parts[2])
    destination_host = _v1_host(family, parts[3])
    source_port = _v1_port(parts[4])
    destination_port = _v1_port(parts[5])
    return ProxyHeader(
        1,
        "PROXY",
        family,
        int(socket.SOCK_STREAM),
        _sockaddr(family, source_host, source_port),
        _sockaddr(family, destination_host, destination_port),
        consumed,
    )


def _check_v1_ascii(data: bytes) -> None:
    # Printable ASCII only (and the final \r): a binary peer fails at once, not at byte 107.
    for byte in data:
        if not 0x20 <= byte < 0x7F and byte != 0x0D:
            raise ProxyProtocolError(f"PROXY v1 header contains the byte {byte:#04x}")


def _v1_host(family: int, text: str) -> str:
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except OSError:
        kind = "IPv4" if family == socket.AF_INET else "IPv6"
        raise ProxyProtocolError(f"PROXY v1 header: {text!r} is not an {kind} address") from None


def _v1_port(text: str) -> int:
    if not (text.isdigit() and len(text) <= 5 and int(text) <= 65535):
        raise ProxyProtocolError(f"PROXY v1 header: {text!r} is not a port number")
    return int(text)


def _sockaddr(family: int, host: str, port: int) -> tuple[Any, ...]:
    if family == socket.AF_INET6:
        return (host, port, 0, 0)
    return (host, port)


# ------------------------------------------------------------------ version 2


def _parse_v2(data: bytes, max_v2_length: int) -> ProxyHeader | None:
    if len(data) < _V2_FIXED:
        if len(data) > 12:
            _v2_command(data[12])
        if len(data) > 13:
            _v2_family(data[13])
        return None
    command = _v2_command(data[12])
    family, protocol = _v2_family(data[13])
    length = int.from_bytes(data[14:16], "big")
    if length > max_v2_length:
        raise ProxyProtocolError(f"PROXY v2 header announces {length} bytes, more than the limit {max_v2_length}")
    consumed = _V2_FIXED + length
    if len(data) < consumed:
        return None
    if command == "LOCAL":
        # The spec: the receiver ignores the address block and uses the real addresses.
        return ProxyHeader(2, "LOCAL", family, protocol, None, None, consumed)
    needed = _V2_ADDRESS_LENGTH[family]
    if length < needed:
        raise ProxyProtocolError(f"PROXY v2 header: {length} bytes is too short for its address family")
    body = data[_V2_FIXED:consumed]
    if family == socket.AF_UNSPEC:
        return ProxyHeader(2, "PROXY", family, protocol, None, None, consumed)
    if family == socket.AF_UNIX:
        return ProxyHeader(2, "PROXY", family, protocol, _unix_path(body[:108]), _unix_path(body[108:216]), consumed)
    size = 4 if family == socket.AF_INET else 16
    source_host = socket.inet_ntop(family, body[:size])
    destination_host = socket.inet_ntop(family, body[size : 2 * size])
    source_port, destination_port = _PORTS.unpack_from(body, 2 * size)
    return ProxyHeader(
        2,
        "PROXY",
        family,
        protocol,
        _sockaddr(family, source_host, source_port),
        _sockaddr(family, destination_host, destination_port),
        consumed,
    )


def _v2_command(byte: int) -> str:
    if byte >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header has version {byte >> 4}, expected 2")
    command = byte & 0x0F
    if command == 0:
        return "LOCAL"
    if command == 1:
        return "PROXY"
    raise ProxyProtocolError(f"PROXY v2 header has an unknown command {command}")


def _v2_family(byte: int) -> tuple[int, int]:
    family = _V2_FAMILIES.get(byte >> 4)
    protocol = _V2_PROTOCOLS.get(byte & 0x0F)
    if family is None or protocol is None:
        raise ProxyProtocolError(f"PROXY v2 header has an unknown address family or protocol {byte:#04x}")
    return int(family), protocol


def _unix_path(raw: bytes) -> str | bytes:
    if raw[:1] == b"\0":
        return raw.rstrip(b"\0")  # an abstract name: bytes, as the socket module gives it
    return os.fsdecode(raw.split(b"\0", 1)[0])
