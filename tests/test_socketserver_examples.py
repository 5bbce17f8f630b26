"""The socketserver examples (the seed documents' programs, for Python 3) run and say what they should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "socketserver"
TIMEOUT = 20


def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an example to completion; return its result (it must exit 0)."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=True, cwd=ROOT,
    )


def start_server(name: str, count: int) -> tuple[subprocess.Popen[str], int]:
    """Start a server example for ``count`` requests; return it and its port."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), "--port", "0", "--count", str(count)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.fullmatch(r"listening on 127\.0\.0\.1 (\d+)\n", first)
    if match is None:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{name} did not start: {first!r}{out!r} {err!r}")
    return proc, int(match.group(1))


def finish(proc: subprocess.Popen[str]) -> str:
    """Wait for a server example to exit on its own; return the rest of its output.

    One that does not (a client failed, so it still waits for a request) is
    killed: no server process outlives its test.
    """
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return out


def test_echo_logs_the_hooks_in_order() -> None:
    """echo.py echoes, and its log shows the server and handler hooks in the stdlib's order."""
    log = run("echo.py").stderr
    assert "client: response from server: b'Hello, world'" in log
    hooks = re.findall(r"^(?:EchoServer|EchoRequestHandler): (\w+)", log, re.M)
    order = ["verify_request", "process_request", "finish_request", "__init__", "setup", "handle",
             "finish", "close_request", "server_close"]
    positions = [hooks.index(hook, hooks.index("verify_request")) for hook in order]
    assert positions == sorted(positions), hooks


def test_echo_simple() -> None:
    """echo_simple.py receives what it sent."""
    assert run("echo_simple.py").stdout == "Sending : 'Hello, world'\nReceived: 'Hello, world'\n"


def test_threaded_answers_from_one_thread_per_request() -> None:
    """threaded.py: three requests, three different handler threads, none of them the server loop's."""
    out = run("threaded.py").stdout
    assert out.startswith("Server loop running in thread: serve_forever\n")
    threads = re.findall(r"^Received: (.+): Hello World (\d)$", out, re.M)
    assert [n for _, n in threads] == ["1", "2", "3"]
    assert len({name for name, _ in threads}) == 3 and "serve_forever" not in {name for name, _ in threads}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forking_answers_from_a_child_process() -> None:
    """forking.py: the answer comes from a process other than the server's."""
    out = run("forking.py").stdout
    server_pid = re.search(r"running in process: (\d+)", out)
    child_pid = re.search(r"Received: '(\d+): Hello, world'", out)
    assert server_pid and child_pid and server_pid.group(1) != child_pid.group(1)


def test_tcp_server_and_client() -> None:
    """tcp_server.py answers tcp_client.py upper-cased, twice, then exits by itself."""
    proc, port = start_server("tcp_server.py", 2)
    try:
        first = run("tcp_client.py", str(port), "hello", "world", "with", "TCP").stdout
        second = run("tcp_client.py", str(port), "python", "is", "nice").stdout
    finally:
        out = finish(proc)
    assert first == "Sent:     hello world with TCP\nReceived: HELLO WORLD WITH TCP\n"
    assert second == "Sent:     python is nice\nReceived: PYTHON IS NICE\n"
    assert out == "127.0.0.1 wrote:\nhello world with TCP\n127.0.0.1 wrote:\npython is nice\n"


def test_udp_server_and_client() -> None:
    """udp_server.py answers udp_client.py upper-cased, twice, then exits by itself."""
    proc, port = start_server("udp_server.py", 2)
    try:
        first = run("udp_client.py", str(port), "hello", "world", "with", "UDP").stdout
        second = run("udp_client.py", str(port), "python", "is", "nice").stdout
    finally:
        out = finish(proc)
    assert first == "Sent:     hello world with UDP\nReceived: HELLO WORLD WITH UDP\n"
    assert second == "Sent:     python is nice\nReceived: PYTHON IS NICE\n"
    assert out == "127.0.0.1 wrote:\nhello world with UDP\n127.0.0.1 wrote:\npython is nice\n"


def test_many_servers_in_one_thread() -> None:
    """many_servers.py: TCP, UDP and Unix servers answer from one reactor in the main thread."""
    assert run("many_servers.py").stdout == (
        "tcp : OVER TCP\nudp : OVER UDP\nunix: OVER A UNIX SOCKET\nserved by thread: MainThread\n"
    )
