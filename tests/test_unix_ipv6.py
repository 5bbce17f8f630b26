"""RequestServer and clients over Unix sockets and IPv6 loopback."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from reactor import Reactor, RequestServer, do_request


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def assert_both_clients_answered(reactor: Reactor, server: RequestServer, address: str) -> None:
    """Reactor.request and (from the server's background thread) do_request both get replies."""
    fut = reactor.request(address, "non-blocking", timeout=5)
    assert reactor.run_until_complete(fut, 5) == "Requested: non-blocking"
    server.start()
    try:
        assert do_request(address, "blocking", 5) == "Requested: blocking"
    finally:
        server.stop()
        server.join(5)


def test_unix_server_request_and_do_request(reactor: Reactor, tmp_path: Path) -> None:
    """A unix: server answers Reactor.request and do_request; the file goes on close."""
    path = tmp_path / "rr.sock"
    server = RequestServer(f"unix:{path}", reactor=reactor)
    assert server.address == f"unix:{path}"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert_both_clients_answered(reactor, server, f"unix:{path}")
    server.close()
    assert not path.exists()


def test_unix_permissions_follow_umask(reactor: Reactor, tmp_path: Path) -> None:
    """The socket file's permissions follow the process umask."""
    old = os.umask(0o077)
    try:
        server = RequestServer(f"unix:{tmp_path / 'p.sock'}", reactor=reactor)
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "p.sock").stat().st_mode)
    assert mode & 0o077 == 0
    server.close()


def test_stale_unix_socket_is_replaced(reactor: Reactor, tmp_path: Path) -> None:
    """A socket file nobody listens on is replaced."""
    path = tmp_path / "stale.sock"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(path))
    old.close()  # leaves the file behind, with no listener
    server = RequestServer(f"unix:{path}", reactor=reactor)
    fut = reactor.request(server.address, "fresh", timeout=5)
    assert reactor.run_until_complete(fut, 5) == "Requested: fresh"
    server.close()


def test_live_unix_socket_is_not_replaced(reactor: Reactor, tmp_path: Path) -> None:
    """A socket file with a live listener is refused with EADDRINUSE, and still works."""
    path = tmp_path / "live.sock"
    first = RequestServer(f"unix:{path}", reactor=reactor)
    with pytest.raises(OSError, match="already listening"):
        RequestServer(f"unix:{path}", reactor=reactor)
    fut = reactor.request(first.address, "still mine", timeout=5)
    assert reactor.run_until_complete(fut, 5) == "Requested: still mine"
    first.close()


def test_regular_file_is_never_replaced(reactor: Reactor, tmp_path: Path) -> None:
    """A path that is a regular file is refused, not deleted."""
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        RequestServer(f"unix:{path}", reactor=reactor)
    assert path.read_text() == "precious"


def test_unix_path_errors(reactor: Reactor, tmp_path: Path) -> None:
    """Too long a path, or a missing directory, is a clear error."""
    with pytest.raises(ValueError, match="too long"):
        RequestServer("unix:" + str(tmp_path / ("x" * 200)), reactor=reactor)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RequestServer(f"unix:{tmp_path / 'nodir' / 's.sock'}", reactor=reactor)


def test_unix_file_replaced_by_another_is_not_removed(reactor: Reactor, tmp_path: Path) -> None:
    """close() removes only its own socket file, not one that replaced it."""
    path = tmp_path / "mine.sock"
    server = RequestServer(f"unix:{path}", reactor=reactor)
    path.unlink()
    path.write_text("someone else's")
    server.close()
    assert path.read_text() == "someone else's"


def test_unix_refused_and_missing(reactor: Reactor, tmp_path: Path) -> None:
    """A missing unix socket is RequestRefused for both clients."""
    missing = f"unix:{tmp_path / 'none.sock'}"
    with pytest.raises(ConnectionRefusedError):
        do_request(missing, "x", 1)
    fut = reactor.request(missing, "x", timeout=1)
    with pytest.raises(RuntimeError):
        reactor.run_until_complete(fut, 5)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_loopback(reactor: Reactor) -> None:
    """RequestServer('[::1]:0') answers request() and do_request('[::1]:port')."""
    server = RequestServer("[::1]:0", reactor=reactor)
    port = server.server_address[1]
    assert server.address == f"[::1]:{port}"
    assert_both_clients_answered(reactor, server, f"[::1]:{port}")
    server.close()


# ------------------------------------------------------------------ staleness without connecting


class Counting(RequestServer):
    """Counts the requests its handler sees."""

    seen: list[str]

    def handle_request(self, request: str) -> str:
        self.seen.append(request)
        return request


def test_binding_over_a_live_server_does_not_touch_it(reactor: Reactor, tmp_path: Path) -> None:
    """A second bind on a live path is EADDRINUSE, and the live server sees no connection and no request."""
    path = tmp_path / "live.sock"
    first = Counting(f"unix:{path}", reactor=reactor)
    first.seen = []
    with pytest.raises(OSError) as info:
        RequestServer(f"unix:{path}", reactor=reactor)
    for _ in range(5):
        reactor.run_once(0)
    stats = first.statistics()
    assert (stats["accepted"], stats["errors"], first.seen) == (0, 0, [])
    assert info.value.errno == errno.EADDRINUSE and f"{path}.lock" in str(info.value)
    assert reactor.run_until_complete(reactor.request(first.address, "mine", timeout=5), 5) == "mine"
    first.close()


def test_lock_file_lives_as_long_as_the_listener(reactor: Reactor, tmp_path: Path) -> None:
    """The listener holds <path>.lock (with its pid) while it listens and removes it with the socket on close."""
    path = tmp_path / "p.sock"
    server = RequestServer(f"unix:{path}", reactor=reactor)
    lock = Path(f"{path}.lock")
    assert lock.read_text() == f"{os.getpid()}\n"
    server.close()
    assert not path.exists() and not lock.exists()


def test_stale_socket_and_stale_lock_are_replaced(reactor: Reactor, tmp_path: Path) -> None:
    """A socket file and an unlocked lock file left by a crashed server are taken over."""
    path = tmp_path / "crashed.sock"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(path))
    old.close()
    Path(f"{path}.lock").write_text("12345\n")
    server = RequestServer(f"unix:{path}", reactor=reactor)
    assert reactor.run_until_complete(reactor.request(server.address, "x", timeout=5), 5) == "Requested: x"
    server.close()
    assert not Path(f"{path}.lock").exists()


def test_a_listening_socket_without_a_lock_is_not_replaced(reactor: Reactor, tmp_path: Path) -> None:
    """A live listener that keeps no lock file (another program) is refused, and no connection reaches it."""
    if not os.path.exists("/proc/net/unix"):
        pytest.skip("the kernel's socket table (/proc/net/unix) is Linux-only")
    path = tmp_path / "foreign.sock"
    foreign = socket.socket(socket.AF_UNIX)  # socket-ok: another program's listener
    foreign.bind(str(path))
    foreign.listen(4)  # socket-ok
    foreign.setblocking(False)
    try:
        with pytest.raises(OSError) as info:
            RequestServer(f"unix:{path}", reactor=reactor)
        assert info.value.errno == errno.EADDRINUSE
        with pytest.raises(BlockingIOError):
            foreign.accept()  # socket-ok: nothing connected to find out
        assert path.exists() and not Path(f"{path}.lock").exists()
    finally:
        foreign.close()


@pytest.mark.parametrize("dangling", [True, False])
def test_a_symbolic_link_is_reported_as_one(reactor: Reactor, tmp_path: Path, dangling: bool) -> None:
    """A symlink at the path (dangling or not) is named with its target, never followed or removed."""
    path = tmp_path / "link.sock"
    target = tmp_path / "elsewhere.sock"
    if not dangling:
        target.write_text("a file")
    path.symlink_to(target)
    with pytest.raises(FileExistsError) as info:
        RequestServer(f"unix:{path}", reactor=reactor)
    message = str(info.value)
    assert "symbolic link" in message and str(target) in message
    assert ("does not exist" in message) == dangling
    assert "Address already in use" not in message
    assert path.is_symlink() and os.readlink(path) == str(target)
    assert target.exists() != dangling and not Path(f"{path}.lock").exists()


def test_a_directory_is_reported_as_one(reactor: Reactor, tmp_path: Path) -> None:
    """A directory at the path is refused, says so, and stays."""
    path = tmp_path / "dir.sock"
    path.mkdir()
    with pytest.raises(FileExistsError, match="is a directory"):
        RequestServer(f"unix:{path}", reactor=reactor)
    assert path.is_dir()


def test_a_relative_path_is_released_where_it_was_claimed(
    reactor: Reactor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server on a relative path removes its socket and lock files even after the working directory changed."""
    monkeypatch.chdir(tmp_path)
    server = RequestServer("unix:rel.sock", reactor=reactor)
    assert (tmp_path / "rel.sock").exists() and (tmp_path / "rel.sock.lock").exists()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    server.close()
    assert not (tmp_path / "rel.sock").exists() and not (tmp_path / "rel.sock.lock").exists()
