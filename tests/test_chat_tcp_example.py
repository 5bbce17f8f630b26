"""examples/chat_tcp.py: the easyservers chat over TCP, beside the UDP chat on one reactor.

The sessions run on a ManualClock over loopback sockets, so the ping beats
(and dropping a member who never answers) take no real time.
"""

from __future__ import annotations

import functools
import importlib
import os
import pathlib
import socket
import subprocess
import sys
from typing import Any

import pytest
from chat_session import play_session, quiet
from conftest import run_until

from reactor import ManualClock, Reactor

LOOPBACK = "127.0.0.1"
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = EXAMPLES / "chat_tcp.py"

if str(EXAMPLES) not in sys.path:  # chat_tcp imports chat_udp, as it does when run as a script
    sys.path.insert(0, str(EXAMPLES))
chat_tcp = importlib.import_module("chat_tcp")


def _env() -> dict[str, str]:
    root = str(EXAMPLES.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _connect(reactor: Reactor, hub: Any, name: str, **kwargs: Any) -> Any:
    fut = chat_tcp.connect(reactor, hub.tcp_address, name, **kwargs)
    run_until(reactor, fut.done)
    return fut.result()[1]


def _close_all(reactor: Reactor, hub: Any, *members: Any) -> None:
    for member in members:
        member.close()
    hub.close()
    run_until(reactor, lambda: not reactor.connections)
    quiet(reactor, 2)  # deliver the last connection_lost calls


def test_two_tcp_members_through_a_whole_session(reactor: Reactor, clock: ManualClock) -> None:
    """JOIN/JERR/JOK, MSGA, MSGP, PING/PONG, drop and disconnect after three missed PINGs, EXIT: every line checked."""
    hub = chat_tcp.ChatHub(0, 0, ping_interval=10.0, host=LOOPBACK, reactor=reactor)
    alice = _connect(reactor, hub, "alice")
    bob = _connect(reactor, hub, "bob", answer_pings=False)

    play_session(reactor, clock, hub, alice, bob, bob_gone=lambda: bob.closed)
    assert not alice.closed  # EXIT logs out; the connection stays open
    _close_all(reactor, hub, alice)


def test_tcp_and_udp_members_share_one_room(reactor: Reactor, clock: ManualClock) -> None:
    """A TCP and a UDP member on one hub: one name space, MSGA and MSGP across the doors, one ping beat."""
    hub = chat_tcp.ChatHub(0, 0, ping_interval=10.0, host=LOOPBACK, reactor=reactor)
    tcp = _connect(reactor, hub, "tina")
    udp = chat_tcp.ChatClient("ulf", hub.address, reactor=reactor)
    tcp.join()
    run_until(reactor, lambda: tcp.received == ["JOK"])
    udp.join("tina")
    run_until(reactor, lambda: udp.received == ["JERR NAME TAKEN"])
    udp.join()
    udp.say("hi from udp")
    tcp.tell("ulf", "psst from tcp")
    clock.advance(10.0)
    run_until(reactor, lambda: len(tcp.received) == 4 and len(udp.received) == 5)
    run_until(reactor, lambda: all(user.missed_pings == 0 for user in hub.users.values()))
    assert tcp.received == ["JOK", "(ulf) hi from udp", "(tina) psst from tcp", "PING"]
    assert udp.received == ["JERR NAME TAKEN", "JOK", "(ulf) hi from udp", "(tina) psst from tcp", "PING"]
    assert [user.address[0] for user in hub.users.values()] == ["tcp", LOOPBACK]
    udp.close()
    _close_all(reactor, hub, tcp)


def test_closing_or_half_closing_the_connection_leaves_the_chat(reactor: Reactor) -> None:
    """A member whose connection closes is logged out; after a half-close the last unterminated line still counts."""
    hub = chat_tcp.ChatHub(0, 0, host=LOOPBACK, reactor=reactor)
    alice = _connect(reactor, hub, "alice")
    alice.join()
    run_until(reactor, lambda: alice.received == ["JOK"])
    raw = socket.create_connection(hub.tcp.sockaddr)
    raw.sendall(b"JOIN nc\r\nMSGA sent with a telnet line end\r\nMSGA last words")
    raw.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: len(alice.received) == 3 and list(hub.users) == ["alice"])
    assert alice.received == ["JOK", "(nc) sent with a telnet line end", "(nc) last words"]
    raw.setblocking(False)
    got = bytearray()

    def read_to_eof() -> bool:
        try:
            data = raw.recv(65536)
        except BlockingIOError:
            return False
        got.extend(data)
        return not data

    run_until(reactor, read_to_eof)  # the hub closes its side once the member left
    assert got == b"JOK\n(nc) sent with a telnet line end\n(nc) last words\n"
    raw.close()
    alice.close()
    run_until(reactor, lambda: not hub.users and not hub.lines)
    _close_all(reactor, hub)


def test_a_member_who_does_not_read_is_disconnected(reactor: Reactor) -> None:
    """Above the write buffer's high water mark a member is disconnected, not buffered for without bound."""
    hub = chat_tcp.ChatHub(0, 0, host=LOOPBACK, reactor=reactor, write_buffer_high=16 * 1024)
    alice = _connect(reactor, hub, "alice")
    alice.join()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(hub.tcp.sockaddr)
    slow.sendall(b"JOIN slow\n")
    run_until(reactor, lambda: len(hub.users) == 2)
    text = "x" * 4000
    most = 0
    for _ in range(2000):
        alice.say(text)
        reactor.run_once(0)
        most = max(most, sum(row.get_write_buffer_size() for row in hub.tcp.connections()))
        if "slow" not in hub.users:
            break
    run_until(reactor, lambda: list(hub.users) == ["alice"] and len(hub.lines) == 1)
    assert most <= 16 * 1024 + 4100 * 2  # the high water mark, and the message that crossed it
    slow.close()
    _close_all(reactor, hub, alice)


def test_a_silent_stranger_is_cut_after_five_beats(reactor: Reactor, clock: ManualClock) -> None:
    """A connection that never joins and says nothing is closed by the idle timeout; members are not."""
    hub = chat_tcp.ChatHub(0, 0, ping_interval=10.0, host=LOOPBACK, reactor=reactor)
    member = _connect(reactor, hub, "member")
    member.join()
    stranger = _connect(reactor, hub, "stranger")
    run_until(reactor, lambda: member.received == ["JOK"] and len(hub.lines) == 2)
    def answered(beat: int) -> bool:
        return bool(member.received.count("PING") == beat and hub.users["member"].missed_pings == 0)

    for beat in range(1, 6):
        clock.advance(10.0)
        run_until(reactor, functools.partial(answered, beat))
        assert not stranger.closed or beat == 5
    run_until(reactor, lambda: stranger.closed)
    assert list(hub.users) == ["member"] and len(hub.lines) == 1 and not member.closed
    _close_all(reactor, hub, member)


def test_demo_runs_on_its_own() -> None:
    """`chat_tcp.py --demo` plays a TCP and UDP session in one reactor and exits."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--demo"],
        capture_output=True, text=True, timeout=10, env=_env(), check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in (
        "[alice] JOK",
        "[bob] JERR NAME TAKEN",
        "[bob] (alice) hello everyone, I am on TCP",
        "[alice] (bob) hi alice, from UDP, only you see this",
        "[bob] (alice) hi bob, from TCP",
        "carol dropped after 3 unanswered PINGs",
        "[carol] (disconnected by the server)",
        "users left: none",
    ):
        assert line in out
    assert "[carol] (alice) is carol still here?" not in out


def test_interactive_client_reads_commands_from_stdin(real_reactor: Reactor) -> None:
    """`chat_tcp.py client PORT NAME` joins over TCP, sends typed lines, and leaves at /quit."""
    r = real_reactor
    hub = chat_tcp.ChatHub(0, 0, host=LOOPBACK, reactor=r)
    bob = _connect(r, hub, "bob")
    bob.join()
    run_until(r, lambda: bob.received == ["JOK"])
    client = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "client", str(hub.tcp.sockaddr[1]), "alice", LOOPBACK],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        assert client.stdin is not None and client.stdout is not None and client.stderr is not None
        client.stdin.write("hello bob\n/msg bob psst\n/quit\n")
        client.stdin.close()
        run_until(r, lambda: client.poll() is not None and len(bob.received) == 3 and len(hub.lines) == 1, turns=400)
        out, err = client.stdout.read(), client.stderr.read()
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(5)
        for stream in (client.stdout, client.stderr):
            if stream is not None:
                stream.close()
    assert client.returncode == 0, err
    assert bob.received == ["JOK", "(alice) hello bob", "(alice) psst"]
    assert "(alice) hello bob" in out
    assert list(hub.users) == ["bob"]
    _close_all(r, hub, bob)


def test_command_line_usage_error() -> None:
    """Bad arguments print the usage and return 2."""
    assert chat_tcp.main(["bogus"]) == 2
    assert chat_tcp.main(["client", "1234"]) == 2


@pytest.mark.parametrize(
    ("line", "sent"),
    [
        ("hello all", "MSGA hello all"),
        ("/msg bob hi there", "MSGP (bob) hi there"),
        ("/quit", "EXIT"),
        ("   ", None),
    ],
)
def test_typed_lines_become_protocol_messages(line: str, sent: str | None) -> None:
    """The interactive client maps typed lines onto the easyservers messages."""
    out: list[str] = []
    client = chat_tcp.TCPChatClient("me")
    client.send = out.append
    keep_going = client.command(line)
    assert out == ([sent] if sent else [])
    assert keep_going is (line != "/quit")
