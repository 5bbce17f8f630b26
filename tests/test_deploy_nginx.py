"""Behind a real load balancer: nginx's stream module and HAProxy (TCP mode) in front of two reactor servers.

The configurations are the ones ``docs/deploy.md`` recommends, generated in a
temporary directory with loopback ports.  Two `RequestServer` instances on
one reactor, run by a thread, stand in for two machines; "killing" one closes
it (its listening socket and every connection it holds), as a crashed machine
would.  Each test skips, saying why, when the balancer's binary (or nginx's
stream module) is missing: ``.ci/run`` installs them when it can.  Every wait
is a bounded poll.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor import Reactor, RequestServer
from reactor.futures import Future

BALANCERS = ["nginx", "haproxy"]
NGINX_MODULE_DIRS = ["/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules"]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)  # sleep-ok: polling another process (nginx, HAProxy), bounded


def free_port() -> int:
    """A loopback port nobody listens on (for the balancer's own listener)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Backend(RequestServer):
    """One "machine": answers ``name: request``; a request starting with ``hold`` waits until released.

    Empty requests are the test's own readiness probes through the balancer and are not recorded.
    """

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        self.name = name
        self.answered = 0
        self.held: list[Future[str]] = []
        self.peers: list[Any] = []
        super().__init__(address, **kwargs)

    def handle_request(self, request: str) -> str | Future[str]:
        if not request:
            return ""  # the balancer's readiness probe (a connection closed at once): not counted
        self.peers.append(self.current_peer)
        if request.startswith("hold"):
            fut: Future[str] = self.reactor.create_future()
            self.held.append(fut)
            return fut
        self.answered += 1
        return f"{self.name}: {request}"


class Machines:
    """Two backends on one reactor served by a thread; `kill` and `release` from the test's thread."""

    def __init__(self, proxy_protocol: bool) -> None:
        self.reactor = Reactor()
        options: dict[str, Any] = {"reactor": self.reactor, "timeout": 30.0}
        if proxy_protocol:
            options.update(proxy_protocol=True, trusted_proxies=["127.0.0.1"])
        self.backends = [Backend(name, "127.0.0.1:0", **options) for name in ("a", "b")]
        self.thread = threading.Thread(target=self.reactor.run, name="backends", daemon=True)
        self.thread.start()

    @property
    def ports(self) -> list[int]:
        """The backends' ports."""
        return [int(backend.server_address[1]) for backend in self.backends]

    def in_reactor(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the reactor's thread and wait for it."""
        done = threading.Event()

        def call() -> None:
            try:
                fn()
            finally:
                done.set()

        self.reactor.call_soon_threadsafe(call)
        assert done.wait(10), "the reactor thread did not run the call"

    def kill(self, backend: Backend) -> None:
        """Close ``backend``: its port refuses and the connections it holds are cut."""
        self.in_reactor(backend.close)

    def release(self, backend: Backend) -> None:
        """Answer every request ``backend`` holds."""

        def answer() -> None:
            for fut in backend.held:
                fut.set_result(f"{backend.name}: released")

        self.in_reactor(answer)

    def close(self) -> None:
        """Stop the thread, then close the servers and the reactor."""
        self.reactor.call_soon_threadsafe(self.reactor.stop)
        self.thread.join(10)
        for backend in self.backends:
            backend.close()
        self.reactor.close()


# ------------------------------------------------------------------ balancers


def nginx_config(tmp: Path, port: int, backends: list[int], proxy_protocol: bool, module: str | None) -> str:
    """The nginx configuration of docs/deploy.md, on loopback ports."""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in backends)
    load = f"load_module {module};\n" if module else ""
    return f"""{load}daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
stream {{
    upstream reactor {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_pass reactor;
        proxy_half_close on;
        proxy_connect_timeout 2s;
        proxy_timeout 35s;
        proxy_next_upstream on;
        proxy_next_upstream_tries 2;
        proxy_protocol {"on" if proxy_protocol else "off"};
    }}
}}
"""


def haproxy_config(tmp: Path, port: int, backends: list[int], proxy_protocol: bool) -> str:
    """The HAProxy configuration of docs/deploy.md, on loopback ports."""
    send = " send-proxy-v2 check-send-proxy" if proxy_protocol else ""
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{p} check inter 500ms fall 1 rise 2{send}"
        for name, p in zip("ab", backends, strict=True)
    )
    return f"""global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 35s
    timeout server 35s
    timeout client-fin 35s
    timeout server-fin 35s
    retries 2
    option redispatch
frontend front
    bind 127.0.0.1:{port}
    default_backend reactor
backend reactor
    balance roundrobin
{servers}
"""


def nginx_stream_module() -> tuple[bool, str | None]:
    """Whether nginx has the stream module, and the file to load when it is a dynamic module."""
    info = subprocess.run(["nginx", "-V"], capture_output=True, text=True, timeout=10).stderr
    if "--with-stream=dynamic" not in info:
        return "--with-stream" in info.split(), None
    for directory in NGINX_MODULE_DIRS:
        path = os.path.join(directory, "ngx_stream_module.so")
        if os.path.exists(path):
            return True, path
    return False, None


class Balancer:
    """A running nginx or HAProxy in front of the machines."""

    def __init__(self, kind: str, tmp: Path, backends: list[int], proxy_protocol: bool) -> None:
        binary = shutil.which(kind) or next(
            (p for p in (f"/usr/sbin/{kind}", f"/usr/local/sbin/{kind}") if os.path.exists(p)), None
        )
        if binary is None:
            pytest.skip(f"{kind} is not installed (.ci/run installs it from the distribution's packages)")
        self.port = free_port()
        config = tmp / f"{kind}.conf"
        if kind == "nginx":
            has_stream, module = nginx_stream_module()
            if not has_stream:
                pytest.skip("nginx has no stream module (on Debian: apt-get install libnginx-mod-stream)")
            config.write_text(nginx_config(tmp, self.port, backends, proxy_protocol, module))
            command = [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(config)]
        else:
            config.write_text(haproxy_config(tmp, self.port, backends, proxy_protocol))
            command = [binary, "-db", "-f", str(config)]
        self.log = tmp / f"{kind}.out"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(self._listening, f"{kind} listening on {self.port}")
        except AssertionError:
            self.close()
            raise AssertionError(f"{kind} did not start: {self.log.read_text()[-2000:]}") from None

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the balancer exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Stop the balancer (bounded)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# ------------------------------------------------------------------ clients


class Client:
    """One yoton request through the balancer: send, half-close, read the reply until EOF."""

    def __init__(self, port: int, text: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        #: The client's own address: what the backend should see with PROXY protocol.
        self.address = self.sock.getsockname()
        self.sock.sendall(text.encode())  # no terminator: the half-close ends the request
        self.sock.shutdown(socket.SHUT_WR)

    def reply(self) -> str | None:
        """The reply without its ``\\r\\n``, or None when the connection ended without one."""
        data = bytearray()
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        finally:
            self.sock.close()
        return data.decode().removesuffix("\r\n") if data.endswith(b"\r\n") else None


def ask(port: int, text: str) -> str | None:
    """One request through the balancer."""
    return Client(port, text).reply()


@pytest.fixture
def machines() -> Iterator[Machines]:
    """Two plain backends."""
    m = Machines(proxy_protocol=False)
    yield m
    m.close()


@pytest.fixture
def proxied_machines() -> Iterator[Machines]:
    """Two backends that read a PROXY header from the balancer (trusted: 127.0.0.1)."""
    m = Machines(proxy_protocol=True)
    yield m
    m.close()


@pytest.fixture(params=BALANCERS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which balancer."""
    return str(request.param)


def start(kind: str, tmp_path: Path, machines: Machines, proxy_protocol: bool = False) -> Balancer:
    """A balancer of ``kind`` in front of ``machines``."""
    return Balancer(kind, tmp_path, machines.ports, proxy_protocol)


# ------------------------------------------------------------------ tests


def test_half_closed_requests_round_trip_to_both_backends(kind: str, tmp_path: Path, machines: Machines) -> None:
    """yoton requests (ended by a half-close) get their replies through the balancer, from both backends."""
    balancer = start(kind, tmp_path, machines)
    try:
        replies = [ask(balancer.port, f"ping {i}") for i in range(8)]
    finally:
        balancer.close()
    assert all(reply is not None and reply.endswith(f": ping {i}") for i, reply in enumerate(replies)), replies
    a, b = machines.backends
    assert a.answered + b.answered == 8
    assert a.answered > 0 and b.answered > 0, (a.answered, b.answered)


def test_killing_one_backend_loses_only_its_requests(kind: str, tmp_path: Path, machines: Machines) -> None:
    """Requests held by a killed backend end without a reply; the other's finish; new ones go to the other."""
    balancer = start(kind, tmp_path, machines)
    a, b = machines.backends
    clients: list[Client] = []
    try:
        clients = [Client(balancer.port, f"hold {i}") for i in range(6)]
        wait_for(lambda: len(a.held) + len(b.held) == 6, "the six held requests reached the backends")
        held_by_a, held_by_b = len(a.held), len(b.held)
        assert held_by_a and held_by_b, (held_by_a, held_by_b)
        machines.kill(a)
        machines.release(b)
        replies = [client.reply() for client in clients]
        after = [ask(balancer.port, f"after {i}") for i in range(6)]
    finally:
        for client in clients:
            client.sock.close()
        balancer.close()
    assert replies.count(None) == held_by_a, replies
    assert sorted(r for r in replies if r is not None) == ["b: released"] * held_by_b
    assert after == [f"b: after {i}" for i in range(6)]


def test_proxy_protocol_gives_the_handler_the_real_client(
    kind: str, tmp_path: Path, proxied_machines: Machines
) -> None:
    """With the balancer sending PROXY headers, the handler's current_peer is the client's own socket."""
    balancer = start(kind, tmp_path, proxied_machines, proxy_protocol=True)
    try:
        clients = [Client(balancer.port, f"who {i}") for i in range(4)]
        replies = [client.reply() for client in clients]
    finally:
        balancer.close()
    assert all(reply is not None for reply in replies), replies
    peers = [peer for backend in proxied_machines.backends for peer in backend.peers]
    assert sorted(peers) == sorted(client.address for client in clients)


def test_backend_refuses_clients_that_bypass_the_balancer(proxied_machines: Machines) -> None:
    """A PROXY-protocol backend refuses a client that is not a trusted proxy (the loopback here is trusted,
    so this sends no header: the connection is closed instead of being served with the wrong address)."""
    reply = ask(proxied_machines.ports[0], "sneaky")
    assert reply is None
    assert all(not backend.peers for backend in proxied_machines.backends)
