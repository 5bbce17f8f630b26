"""The public API's types say what the calls do: ``mypy --strict`` rejects wrong callback arguments.

Each snippet is type-checked in a subprocess from the checkout's root (so
``reactor`` is this checkout's package) and the test asserts the errors mypy
reports, line by line: a snippet that should fail must fail where expected,
and nowhere else.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (the test extra)"),
    pytest.mark.timeout(300),
]

SNIPPET = '''\
import socket
import ssl

from reactor import Protocol, Reactor, StreamReader, StreamWriter, open_connection, start_server
from reactor.easy import after, every


class Hello(Protocol):
    pass


def takes_int(number: int) -> None:
    pass


r = Reactor()
r.call_soon(takes_int, 1)
r.call_later(1.0, takes_int, 2)
r.call_soon(lambda a: None, 1, 2)  # E: too many arguments
r.call_soon(takes_int, "one")  # E: wrong type
r.call_later(1.0, takes_int)  # E: too few arguments
r.call_at(5.0, takes_int, 1, 2)  # E: too many arguments
r.call_every(1.0, takes_int, b"x")  # E: wrong type
r.call_soon_threadsafe(takes_int, None)  # E: wrong type
a, b = socket.socketpair()
r.add_reader(a, takes_int, 1)
r.add_reader(a, takes_int, "x")  # E: wrong type
r.add_writer(b, takes_int)  # E: too few arguments
connecting = r.create_connection(Hello, "localhost:9")
reveal_type(connecting)  # N: Future[tuple[reactor.transport.stream.StreamTransport, snippet.Hello]]
secure = r.create_connection(Hello, ("localhost", 9), ssl=ssl.create_default_context())
reveal_type(secure)  # N: Future[tuple[reactor.transport.tls.TLSTransport, snippet.Hello]]
server = r.create_server(Hello, ("localhost", 0), idle_timout=5)  # E: unexpected keyword
r.request("localhost:9", "x", 5, max_reply=10)  # E: unexpected keyword
every(1.0, takes_int, 1, reactor=r)
every(1.0, takes_int, "x", reactor=r)  # E: wrong type
after(1.0, takes_int, reactor=r)  # E: too few arguments
r.add_signal_handler(1, takes_int, 1)
r.add_signal_handler(1, takes_int)  # E: too few arguments
reveal_type(r.run_in_executor(None, len, "abc"))  # N: reactor.futures.Future[int]
r.run_in_executor(None, takes_int, "x")  # E: wrong type
maybe: ssl.SSLContext | None = None
either = r.create_connection(Hello, "localhost:9", ssl=maybe)
reveal_type(either)  # N: StreamTransport | reactor.transport.tls.TLSTransport, snippet.Hello]]


async def handle(reader: StreamReader, writer: StreamWriter) -> None:
    pass


async def streams() -> None:
    await start_server(handle, ("localhost", 0), idle_timeout=5, ssl=maybe)
    await start_server(handle, "localhost:0", idle_timout=5)  # E: unexpected keyword
    await open_connection("localhost:9", timeout=5, ssl=maybe)
    await open_connection("localhost:9", timeout="5")  # E: wrong type
'''


def test_mypy_checks_callback_arguments_and_create_connection(tmp_path: Path) -> None:
    """call_soon & co. (and easy's every/after) check the arguments; create_connection's future names its types."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
         "--no-color-output", "--no-error-summary", str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    reported: dict[int, list[str]] = {}
    for line in proc.stdout.splitlines():
        found = re.match(r".*snippet\.py:(\d+): (error|note): (.*)", line)
        if found:
            reported.setdefault(int(found.group(1)), []).append(f"{found.group(2)}: {found.group(3)}")
    expected = {number: text for number, text in enumerate(SNIPPET.splitlines(), start=1) if "  # " in text}
    errors = {number for number, messages in reported.items() if any(m.startswith("error") for m in messages)}
    assert errors == {number for number, text in expected.items() if "# E:" in text}, proc.stdout
    for number, text in expected.items():
        if "# N:" in text:
            revealed = text.split("# N: ", 1)[1]
            assert any(revealed in message for message in reported.get(number, [])), (number, proc.stdout)
