"""Parse yoton-style address strings into what a socket needs.

Why this module exists
----------------------
yoton names an endpoint with one short string, ``'hostname:port'``, and
gives both halves a little vocabulary of their own: ``localhost`` means the
loopback interface, ``publichost`` (or ``publichostN``) means one of this
machine's network addresses, and a port may be a *name* (``'localhost:chat'``)
that is hashed to a number in the dynamic range 49152..65535, optionally plus
an offset (``'chat+1'``).  Two programs that agree on a name reach the same
port without agreeing on a number, and our hash is yoton's to the bit so a
``reactor`` process and a yoton process meet there too.

We add the spellings a modern stack needs: ``[::1]:8000`` for IPv6 (the URL
bracket convention, because a bare IPv6 literal makes the last colon
ambiguous), ``unix:/path`` for Unix domain sockets, and an optional ``tcp://``
prefix.

What can go wrong, and what we chose
------------------------------------
* An address is often typed by a human, so every malformed one raises
  :class:`ValueError` whose message quotes the input with ``repr`` and says
  what was expected.  Whitespace is never silently stripped or hashed:
  ``'localhost: 80'`` is an error, not port ``port_hash(' 80')``.
* The parser does no DNS.  A hostname other than the two keywords is kept as
  given; resolving it is the business of whoever connects or binds, where a
  slow resolver can be given a deadline.  Hostnames are assumed to be IPv4
  (``AF_INET``), as in yoton; IPv6 is requested with brackets.
* ``publichost`` needs this machine's addresses.  We ask the local resolver
  for the addresses of ``socket.gethostname()`` (usually answered from
  ``/etc/hosts``) and never send a packet to find out; the source is a
  parameter so tests and unusual machines can supply their own list.
* ``sockaddr`` for IPv6 is the 4-tuple ``(host, port, flowinfo, scope_id)``
  that ``getsockname()`` returns, with flowinfo and scope_id 0 (a zone such as
  ``%eth0`` stays in the host string, where ``connect`` and ``bind`` accept
  it).  :func:`format_address` accepts both the 2- and 4-tuple forms.
* A port name is easy to type by mistake: ``'localhost:8o00'`` (a letter O)
  is the name ``'8o00'``, a valid port in the dynamic range, and a server
  there is found by nobody who meant 8000.  We keep yoton's hashing, and say
  so: the parsed `Address` records the ``port_name``, and the first parse of
  each such address logs an INFO line with the port it stands for.
* A URL (``'http://host:80'``) is not an address; its message says to drop
  the scheme rather than complaining about its colons.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Address",
    "AddressLike",
    "SockAddr",
    "address_text",
    "format_address",
    "parse_address",
    "port_hash",
    "public_addresses",
]

#: yoton's hash multiplier, and the base and width of the range names map to.
_HASH_FACTOR = 0xD2D84A61
_DYNAMIC_PORT_BASE = 49152
_HASH_MODULUS = 2**14
_MAX_PORT = 65535

_PUBLICHOST = re.compile(r"publichost(\d*)", re.IGNORECASE | re.ASCII)
_TCP_PREFIX = "tcp://"
#: ``http://``, ``tcp://``, ``redis+unix://``...: the start of a URL (RFC 3986 scheme).
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://", re.ASCII)
_UNIX_PREFIX = "unix:"

#: The type of a socket address as the ``socket`` module takes it.
SockAddr = tuple[str, int] | tuple[str, int, int, int] | str


def port_hash(name: str) -> int:
    """Return the port yoton assigns to the port *name*, in 49152..65535.

    The same name gives the same port here and in yoton, so the two can find
    each other by name (``port_hash('test') == 56337``).
    """
    val = 0
    for char in name:
        val += (val >> 3) + (ord(char) * _HASH_FACTOR)
    val += (val >> 3) + (len(name) * _HASH_FACTOR)
    return _DYNAMIC_PORT_BASE + (val % _HASH_MODULUS)


def public_addresses() -> list[str]:
    """Return this machine's IPv4 addresses other than loopback, in resolver order.

    The list comes from the local resolver's answer for ``socket.gethostname()``
    (no traffic leaves the machine to find it).  Duplicates, ``127.x.x.x`` and
    ``0.0.0.0`` are left out; an unresolvable hostname gives an empty list.
    """
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found: list[str] = []
    for info in infos:
        host = str(info[4][0])
        if host.startswith("127.") or host == "0.0.0.0" or host in found:
            continue
        found.append(host)
    return found


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address: what ``socket.socket(family)`` and ``connect``/``bind`` need.

    ``sockaddr`` is ``(host, port)`` for ``AF_INET``, ``(host, port, 0, 0)``
    for ``AF_INET6`` and the path string for ``AF_UNIX``.  ``text`` is the
    canonical spelling, which :func:`parse_address` maps back to an equal
    ``Address``.
    """

    family: int
    sockaddr: SockAddr
    text: str
    #: The port as written when it was a name (``'chat'``, ``'chat+1'``,
    #: ``'8o00'``) that :func:`port_hash` turned into the number in
    #: ``sockaddr``; None for a decimal port.  Not part of equality.
    port_name: str | None = field(default=None, compare=False)

    @property
    def port(self) -> int | None:
        """The port number (None for a Unix socket)."""
        return None if isinstance(self.sockaddr, str) else self.sockaddr[1]

    def __str__(self) -> str:
        """Return the canonical text, e.g. ``'127.0.0.1:5555'``."""
        return self.text


#: What the calls that connect or listen accept: an address string, or a
#: ``(host, port)`` tuple as asyncio and the socket module spell it (IPv6:
#: ``('::1', port)`` or the 4-tuple ``getsockname()`` gives).
AddressLike = str | tuple[str, int] | tuple[str, int, int, int]


def address_text(address: AddressLike) -> str:
    """Spell ``address`` the package's way: a string is returned as it is, a tuple is converted.

    ``('127.0.0.1', 8000)`` gives ``'127.0.0.1:8000'``, ``('localhost', 0)``
    gives ``'localhost:0'``, and ``('::1', 8000)`` or ``('::1', 8000, 0, 0)``
    gives ``'[::1]:8000'``.  A string is checked later, by
    :func:`parse_address`.  Raises :class:`TypeError` for anything else and
    :class:`ValueError` for a tuple with an empty host or a port outside
    0..65535.
    """
    if isinstance(address, str):
        return address
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError(f"address must be a str like 'localhost:80' or a (host, port) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"an address tuple is (host: str, port: int), got {address!r}")
    if not host:
        raise ValueError(
            f"empty host in address {address!r}: give one, e.g. ('localhost', {port}) for this machine only, "
            f"or ('0.0.0.0', {port}) to serve on every network interface"
        )
    if not 0 <= port <= _MAX_PORT:
        raise ValueError(f"port {port} of address {address!r} is not in 0..{_MAX_PORT}")
    if ":" in host or len(address) == 4:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def format_address(family: int, sockaddr: SockAddr) -> str:
    """Spell a socket address the way :func:`parse_address` reads it.

    ``(AF_INET, ('127.0.0.1', 5555))`` gives ``'127.0.0.1:5555'``,
    ``(AF_INET6, ('::1', 5555, 0, 0))`` gives ``'[::1]:5555'`` and
    ``(AF_UNIX, '/tmp/s')`` gives ``'unix:/tmp/s'``.  Useful for the result of
    ``getsockname()`` after binding port 0.
    """
    if family == socket.AF_INET6 and isinstance(sockaddr, tuple):
        return f"[{sockaddr[0]}]:{sockaddr[1]}"
    if family == socket.AF_INET and isinstance(sockaddr, tuple) and len(sockaddr) == 2:
        return f"{sockaddr[0]}:{sockaddr[1]}"
    if family == socket.AF_UNIX and isinstance(sockaddr, str):
        return _UNIX_PREFIX + sockaddr
    raise ValueError(f"cannot format socket address {sockaddr!r} of family {family!r}")


def parse_address(address: str, *, resolve: Callable[[], Sequence[str]] | None = None) -> Address:
    """Parse a yoton-style *address* into an :class:`Address`.

    Accepted forms (an optional ``tcp://`` prefix is ignored for the first two):

    * ``'host:port'`` -- ``AF_INET``.  ``localhost`` becomes ``127.0.0.1``;
      ``publichost`` / ``publichostN`` becomes this machine's N-th (0-based)
      public IPv4 address; any other host (IP or hostname) is kept as given,
      without DNS.
    * ``'[ipv6]:port'`` -- ``AF_INET6``, e.g. ``'[::1]:8000'``.
    * ``'unix:path'`` -- ``AF_UNIX``; the path may be relative.  The prefix
      wins over a host named ``unix``: ``'unix:80'`` is the socket file ``80``.

    The port is decimal (0 lets the OS choose) or a name hashed with
    :func:`port_hash`; either may carry an offset, ``'chat+1'`` or
    ``'5000+3'``.  *resolve* returns the list of public addresses that
    ``publichostN`` indexes; it defaults to :func:`public_addresses` and is
    only called when the host is a ``publichost`` keyword.

    Raises :class:`TypeError` if *address* is not a ``str`` and
    :class:`ValueError`, quoting the input, if it is malformed.
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be a str like 'localhost:80', not {address!r}")
    rest = address
    scheme = _URL_SCHEME.match(rest) if "://" in rest else None
    if scheme is not None and scheme.group(0).lower() not in (_TCP_PREFIX, "unix://"):  # 'unix:///p' is a path
        raise ValueError(_scheme_message(address, scheme.group(0)))
    if rest[: len(_TCP_PREFIX)].lower() == _TCP_PREFIX:
        rest = rest[len(_TCP_PREFIX) :]
        if rest[: len(_UNIX_PREFIX)].lower() == _UNIX_PREFIX:
            raise ValueError(f"address {address!r} mixes 'tcp://' with 'unix:'")
    elif rest[: len(_UNIX_PREFIX)].lower() == _UNIX_PREFIX:
        path = rest[len(_UNIX_PREFIX) :]
        if not path:
            raise ValueError(f"empty Unix socket path in address {address!r}")
        return Address(socket.AF_UNIX, path, _UNIX_PREFIX + path)

    if rest.startswith("["):
        family = socket.AF_INET6
        close = rest.find("]")
        if close < 0:
            raise ValueError(f"missing ']' in IPv6 address {address!r}")
        host = rest[1:close]
        after = rest[close + 1 :]
        if not after.startswith(":"):
            raise ValueError(f"expected ':port' after ']' in address {address!r}")
        port_text = after[1:]
        _check_ipv6(host, address)
    else:
        family = socket.AF_INET
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise ValueError(f"address {address!r} has no ':port' (expected 'host:port')")
        if "[" in host or "]" in host:
            raise ValueError(f"misplaced bracket in address {address!r}")
        if ":" in host:
            raise ValueError(
                f"ambiguous colons in address {address!r}: write IPv6 hosts as '[::1]:port'"
            )
        if not host:
            raise ValueError(
                f"empty host in address {address!r}: give one, e.g. 'localhost:{port_text}' for this "
                f"machine only, or '0.0.0.0:{port_text}' to serve on every network interface"
            )
        if _has_space(host):
            raise ValueError(f"whitespace in host of address {address!r}")
        host = _special_host(host, address, resolve)

    port = _parse_port(port_text, address)
    base = port_text.rpartition("+")[0] or port_text
    port_name = None if _decimal(base) else port_text
    if port_name is not None:
        _announce_port_name(address, port_name, port)
    sockaddr: SockAddr
    if family == socket.AF_INET6:
        sockaddr = (host, port, 0, 0)
    else:
        sockaddr = (host, port)
    return Address(family, sockaddr, format_address(family, sockaddr), port_name)


def _scheme_message(address: str, scheme: str) -> str:
    """Say what to write instead of a URL: ``'http://example.org:80/x'`` -> ``'example.org:80'``."""
    location = address[len(scheme) :].partition("/")[0].rpartition("@")[2]
    if not location:
        suggestion = "'host:port'"
    elif location.rpartition(":")[2].isdigit() and ":" in location:
        suggestion = repr(location)
    else:
        suggestion = repr(location + ":PORT")
    return (
        f"address {address!r} is a URL ({scheme!r}): give host:port without a scheme, "
        f"e.g. {suggestion} (or 'unix:/path' for a Unix socket)"
    )


#: Addresses whose port name was already reported (see `_announce_port_name`).
_announced: set[str] = set()
_ANNOUNCED_MAX = 256


def _announce_port_name(address: str, name: str, port: int) -> None:
    """Log, once per address, the port a port name stands for.

    A port with a letter in it is hashed, as yoton does, so ``'localhost:8o00'``
    (a mistyped ``8000``) is valid and silently lands on port 6xxxx.  One INFO
    line per address on the ``reactor`` logger makes that visible without
    repeating it for every request a client makes.
    """
    if address in _announced:
        return
    if len(_announced) >= _ANNOUNCED_MAX:
        _announced.clear()
    _announced.add(address)
    logging.getLogger("reactor.addresses").info(
        "address %r: port name %r -> port %d (a port with a letter is a name, hashed as yoton does)",
        address, name, port,
    )


def _has_space(text: str) -> bool:
    return any(char.isspace() for char in text)


def _check_ipv6(host: str, address: str) -> None:
    """Raise ValueError unless *host* is an IPv6 literal (with optional zone)."""
    if not host:
        raise ValueError(f"empty IPv6 host between brackets in address {address!r}")
    import ipaddress  # here, not at import: only bracketed addresses need it

    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IPv6 address, in address {address!r}") from None


def _special_host(host: str, address: str, resolve: Callable[[], Sequence[str]] | None) -> str:
    """Map the ``localhost`` and ``publichostN`` keywords; keep other hosts."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    match = _PUBLICHOST.fullmatch(host)
    if match is None:
        return host
    index = int(match.group(1) or "0")
    candidates = list((resolve or public_addresses)())
    if index >= len(candidates):
        raise ValueError(
            f"address {address!r} asks for public address #{index}, but this machine "
            f"has {len(candidates)}: {candidates!r}"
        )
    return candidates[index]


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_port(text: str, address: str) -> int:
    """Turn ``'80'``, ``'chat'``, ``'chat+1'`` or ``'5000+3'`` into a port number."""
    if not text:
        raise ValueError(f"empty port in address {address!r}")
    if _has_space(text):
        raise ValueError(f"whitespace in port of address {address!r}")
    base, plus, offset_text = text.rpartition("+")
    if not plus:
        base, offset_text = text, ""
    elif not base or not _decimal(offset_text):
        raise ValueError(
            f"bad port {text!r} in address {address!r}: expected 'name+N' or 'number+N'"
        )
    if any(char in base for char in ":[]"):
        raise ValueError(f"bad port {text!r} in address {address!r}")
    if base.startswith("-"):
        # '-1' is a negative number, not a port name to hash.
        raise ValueError(f"negative port {text!r} in address {address!r}")
    port = int(base) if _decimal(base) else port_hash(base)
    if offset_text:
        port += int(offset_text)
    if not 0 <= port <= _MAX_PORT:
        raise ValueError(f"port {port} out of range 0..65535 in address {address!r}")
    return port
