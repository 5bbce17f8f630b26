"""Tests for reactor.addresses: yoton port hashing and address parsing."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor import addresses
from reactor.addresses import Address, format_address, parse_address, port_hash, public_addresses

PUBLIC = ["192.168.1.10", "10.0.0.7", "172.16.5.5"]


def fixed_public() -> Sequence[str]:
    """Return a deterministic list of public addresses."""
    return PUBLIC


def no_public() -> Sequence[str]:
    """Return no public addresses, like an offline machine."""
    return []


@pytest.mark.parametrize(
    ("name", "port"),
    [
        ("test", 56337),
        ("pyzo", 53281),
        ("yoton", 58084),
        ("kernel", 51157),
        ("chat", 49264),
        ("a", 65274),
    ],
)
def test_port_hash_matches_yoton(name: str, port: int) -> None:
    """port_hash reproduces yoton's ports for known names."""
    assert port_hash(name) == port


@given(st.text())
def test_port_hash_is_in_dynamic_range(name: str) -> None:
    """Every name hashes into 49152..65535."""
    assert 49152 <= port_hash(name) <= 65535


def test_host_and_numeric_port() -> None:
    """A plain IPv4 'host:port' parses to AF_INET and a 2-tuple."""
    address = parse_address("10.1.2.3:5555")
    assert address == Address(socket.AF_INET, ("10.1.2.3", 5555), "10.1.2.3:5555")
    assert str(address) == "10.1.2.3:5555"


def test_localhost_maps_to_loopback() -> None:
    """'localhost' becomes 127.0.0.1, case-insensitively."""
    assert parse_address("localhost:80").sockaddr == ("127.0.0.1", 80)
    assert parse_address("LocalHost:80").text == "127.0.0.1:80"


def test_hostname_kept_without_resolution() -> None:
    """Any other hostname is kept as given, with no DNS lookup."""
    address = parse_address("example.invalid:8080")
    assert address.family == socket.AF_INET
    assert address.sockaddr == ("example.invalid", 8080)


def test_tcp_prefix_is_stripped() -> None:
    """An optional 'tcp://' prefix is ignored."""
    assert parse_address("tcp://localhost:9000") == parse_address("localhost:9000")
    assert parse_address("TCP://[::1]:9000") == parse_address("[::1]:9000")


def test_port_zero_allowed() -> None:
    """Port 0 (let the OS choose) is accepted."""
    assert parse_address("127.0.0.1:0").sockaddr == ("127.0.0.1", 0)


def test_port_max_allowed() -> None:
    """Port 65535 is accepted."""
    assert parse_address("127.0.0.1:65535").sockaddr == ("127.0.0.1", 65535)


def test_named_port_is_hashed() -> None:
    """A non-numeric port is hashed like yoton."""
    assert parse_address("localhost:test").sockaddr == ("127.0.0.1", 56337)


def test_named_port_with_offset() -> None:
    """'name+offset' adds the offset to the hash."""
    assert parse_address("localhost:chat+3").sockaddr == ("127.0.0.1", 49264 + 3)


def test_numeric_port_with_offset() -> None:
    """'5000+3' is port 5003."""
    assert parse_address("localhost:5000+3").sockaddr == ("127.0.0.1", 5003)


def test_publichost_is_first_address() -> None:
    """'publichost' is the same as 'publichost0'."""
    first = parse_address("publichost:80", resolve=fixed_public)
    assert first.sockaddr == ("192.168.1.10", 80)
    assert parse_address("publichost0:80", resolve=fixed_public) == first


def test_publichost_index() -> None:
    """'publichostN' picks the N-th public address, 0-based."""
    assert parse_address("publichost2:kernel", resolve=fixed_public).sockaddr == (
        "172.16.5.5",
        51157,
    )
    assert parse_address("PublicHost1:1", resolve=fixed_public).sockaddr == ("10.0.0.7", 1)


def test_publichost_missing_index_raises() -> None:
    """An index past the end of the list raises ValueError quoting the input."""
    with pytest.raises(ValueError, match=r"'publichost3:80'"):
        parse_address("publichost3:80", resolve=fixed_public)


def test_publichost_without_public_addresses_raises() -> None:
    """'publichost' on a machine with no public address raises ValueError."""
    with pytest.raises(ValueError, match=r"'publichost:80'"):
        parse_address("publichost:80", resolve=no_public)


def test_resolve_only_called_for_publichost() -> None:
    """The address source is not consulted for ordinary hosts."""
    calls: list[int] = []

    def counting() -> Sequence[str]:
        calls.append(1)
        return PUBLIC

    parse_address("localhost:80", resolve=counting)
    parse_address("publichostx:80", resolve=counting)
    assert calls == []
    parse_address("publichost:80", resolve=counting)
    assert calls == [1]


def test_default_public_source_excludes_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """public_addresses drops loopback and duplicates and keeps resolver order."""

    def fake_getaddrinfo(host: str, port: object, family: int, kind: int) -> list[object]:
        assert family == socket.AF_INET
        return [
            (family, kind, 6, "", (ip, 0))
            for ip in ["127.0.1.1", "192.168.0.5", "127.0.0.1", "10.9.8.7", "192.168.0.5"]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert public_addresses() == ["192.168.0.5", "10.9.8.7"]
    assert parse_address("publichost1:80").sockaddr == ("10.9.8.7", 80)


def test_default_public_source_unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unresolvable hostname gives no public addresses."""

    def failing(*args: object) -> list[object]:
        raise socket.gaierror("no such host")

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    assert public_addresses() == []


def test_ipv6_brackets() -> None:
    """'[::1]:8000' parses to AF_INET6 with a 4-tuple sockaddr."""
    address = parse_address("[::1]:8000")
    assert address == Address(socket.AF_INET6, ("::1", 8000, 0, 0), "[::1]:8000")


def test_ipv6_named_port_and_zone() -> None:
    """IPv6 hosts take named ports, and a zone stays in the host."""
    address = parse_address("[fe80::1%eth0]:test+1")
    assert address.sockaddr == ("fe80::1%eth0", 56338, 0, 0)
    assert address.text == "[fe80::1%eth0]:56338"


def test_unix_absolute_path() -> None:
    """'unix:/path' parses to AF_UNIX with the path."""
    address = parse_address("unix:/tmp/reactor.sock")
    assert address == Address(socket.AF_UNIX, "/tmp/reactor.sock", "unix:/tmp/reactor.sock")


def test_unix_relative_path_with_colon() -> None:
    """Relative Unix paths, even with colons, are kept whole."""
    assert parse_address("unix:run/a:b.sock").sockaddr == "run/a:b.sock"


def test_address_is_frozen_and_slotted() -> None:
    """Address is immutable and has no per-instance dict."""
    address = parse_address("localhost:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.text = "x"  # type: ignore[misc]
    assert not hasattr(address, "__dict__")


@pytest.mark.parametrize(
    ("family", "sockaddr", "text"),
    [
        (socket.AF_INET, ("127.0.0.1", 5555), "127.0.0.1:5555"),
        (socket.AF_INET6, ("::1", 5555, 0, 0), "[::1]:5555"),
        (socket.AF_INET6, ("::1", 5555), "[::1]:5555"),
        (socket.AF_UNIX, "/path", "unix:/path"),
    ],
)
def test_format_address(family: int, sockaddr: addresses.SockAddr, text: str) -> None:
    """format_address spells socket addresses the way parse_address reads them."""
    assert format_address(family, sockaddr) == text
    assert parse_address(text).family == family


def test_format_address_rejects_mismatch() -> None:
    """A sockaddr that does not fit its family raises ValueError."""
    with pytest.raises(ValueError):
        format_address(socket.AF_UNIX, ("127.0.0.1", 1))


def test_format_address_of_bound_socket() -> None:
    """format_address of getsockname() after binding port 0 round-trips."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        text = format_address(sock.family, sock.getsockname())
    assert parse_address(text).sockaddr[1] != 0


@given(
    st.sampled_from(["localhost", "127.0.0.1", "example.org", "[::1]", "[2001:db8::5]"]),
    st.integers(0, 65535),
)
def test_text_round_trips(host: str, port: int) -> None:
    """Parsing an Address's text gives the same Address."""
    address = parse_address(f"{host}:{port}")
    assert parse_address(address.text) == address


@pytest.mark.parametrize(
    "bad",
    [
        "localhost",  # no colon
        "",  # nothing at all
        ":80",  # empty host
        "localhost:",  # empty port
        "localhost:65536",  # out of range
        "localhost:99999999",  # far out of range
        "localhost:a+65535",  # hash plus offset out of range
        "localhost:chat+",  # empty offset
        "localhost:+5",  # offset without base
        "localhost:chat+x",  # non-numeric offset
        "localhost:-1",  # negative port
        "localhost: 80",  # whitespace in port
        "local host:80",  # whitespace in host
        "::1:80",  # bare IPv6
        "[::1:80",  # missing ']'
        "[::1]80",  # missing ':' after ']'
        "[::1]",  # no port at all
        "[]:80",  # empty brackets
        "[nothost]:80",  # not IPv6 between brackets
        "[::1]:",  # empty IPv6 port
        "[::1]:80:90",  # stray colon in port
        "host]:80",  # stray bracket in host
        "unix:",  # empty unix path
        "tcp://unix:/tmp/x",  # mixed schemes
        "tcp://",  # nothing after prefix
    ],
)
def test_bad_addresses_raise_value_error_quoting_input(bad: str) -> None:
    """Malformed addresses raise ValueError whose message quotes the input."""
    with pytest.raises(ValueError) as info:
        parse_address(bad, resolve=fixed_public)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [None, 80, b"localhost:80", ("localhost", 80)])
def test_non_str_raises_type_error(bad: object) -> None:
    """Anything but a str raises TypeError."""
    with pytest.raises(TypeError):
        parse_address(bad)  # type: ignore[arg-type]


@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(text: str) -> None:
    """Any string either parses or raises ValueError, never anything else."""
    try:
        address = parse_address(text, resolve=fixed_public)
    except ValueError:
        return
    assert parse_address(address.text) == address
