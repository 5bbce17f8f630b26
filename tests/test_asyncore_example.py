"""examples/asyncore_echo.py: asyncore and asynchat servers beside a RequestServer and a timer, in one loop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "asyncore_echo.py"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONWARNINGS": "error"}


@pytest.mark.timeout(30)
def test_demo_checks_every_service_and_exits() -> None:
    """``--demo`` runs one client session per server and a timer in the same loop, prints each result, exits 0."""
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--demo"], capture_output=True, text=True, timeout=25,
                          env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    assert "echo server: sent b'hello, asyncore', got back b'hello, asyncore'" in out
    assert "line server: replies ['you said: hello', 'you said: async_chat', 'bye']" in out
    assert "RequestServer: 'ping' -> 'Requested: ping'" in out
    assert any(line.startswith("timer: ") and int(line.split()[1]) >= 3 for line in out)
    assert out[-1] == "demo ok: four services, one loop, one thread"
    assert proc.stderr == ""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _exchange(port: int, data: bytes, until: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        got = b""
        while not got.endswith(until):
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    return got


@pytest.mark.timeout(30)
def test_server_mode_serves_all_three_ports_until_interrupted() -> None:
    """Run as a server, it answers on its echo, line and request ports, and Ctrl-C stops it cleanly."""
    echo, lines, requests = _free_ports(3)
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), str(echo), str(lines), str(requests)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith(f"echo on 127.0.0.1:{echo}"), banner
        assert _exchange(echo, b"ping", b"ping") == b"ping"
        assert _exchange(lines, b"a\nquit\n", b"bye\r\n") == b"you said: a\r\nbye\r\n"
        with socket.create_connection(("127.0.0.1", requests), timeout=5) as sock:
            sock.sendall(b"hi\r\n")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100).startswith(b"Requested: hi")
    finally:
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 0, err
    assert err == ""
