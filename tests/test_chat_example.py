"""examples/chat_udp.py: the easyservers chat protocol, driven over loopback UDP.

The session test runs on a ManualClock, so the ping beats (and dropping a
client that never answers) take no real time.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
from types import ModuleType

import pytest
from chat_session import play_session, quiet
from conftest import run_until

from reactor import ManualClock, Reactor

LOOPBACK = "127.0.0.1"
EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "chat_udp.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_udp", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chat_udp = _load()


def _env() -> dict[str, str]:
    root = str(EXAMPLE.parent.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_two_clients_through_a_whole_session(reactor: Reactor, clock: ManualClock) -> None:
    """JOIN/JERR/JOK, MSGA, MSGP, PING/PONG, drop after three missed PINGs, EXIT: every message checked."""
    chat = chat_udp.ChatServer(0, ping_interval=10.0, host=LOOPBACK, reactor=reactor)
    alice = chat_udp.ChatClient("alice", chat.address, reactor=reactor)
    bob = chat_udp.ChatClient("bob", chat.address, reactor=reactor, answer_pings=False)

    play_session(
        reactor, clock, chat, alice, bob, after_drop=lambda: bob.say("still here?")  # no longer a user: ignored
    )
    for closable in (alice, bob, chat):
        closable.close()


def test_strangers_cannot_post_and_exit(reactor: Reactor) -> None:
    """MSGA, MSGP and EXIT from an address that has not joined are ignored."""
    chat = chat_udp.ChatServer(0, host=LOOPBACK, reactor=reactor)
    member = chat_udp.ChatClient("member", chat.address, reactor=reactor)
    stranger = chat_udp.ChatClient("stranger", chat.address, reactor=reactor)
    member.join()
    run_until(reactor, lambda: member.received == ["JOK"])
    stranger.say("hi")
    stranger.tell("member", "hi")
    stranger.exit()
    stranger.send("WHAT")
    quiet(reactor)
    assert member.received == ["JOK"] and stranger.received == []
    assert list(chat.users) == ["member"]
    for closable in (member, stranger, chat):
        closable.close()


def test_interactive_client_reads_commands_from_stdin(real_reactor: Reactor) -> None:
    """`chat_udp.py client PORT NAME` joins, sends typed lines, and leaves at /quit."""
    r = real_reactor
    chat = chat_udp.ChatServer(0, host=LOOPBACK, reactor=r)
    bob = chat_udp.ChatClient("bob", chat.address, reactor=r)
    bob.join()
    run_until(r, lambda: bob.received == ["JOK"])
    # UDP needs no answer to go on: the client may finish before the server reads.
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "client", str(chat.address[1]), "alice", LOOPBACK],
        input="hello bob\n/msg bob psst\n/quit\n", capture_output=True, text=True,
        timeout=10, env=_env(), check=False,
    )
    run_until(r, lambda: "alice" not in chat.users and len(bob.received) == 3)
    assert done.returncode == 0, done.stderr
    assert bob.received == ["JOK", "(alice) hello bob", "(alice) psst"]
    assert list(chat.users) == ["bob"]
    bob.close()
    chat.close()


def test_demo_runs_on_its_own() -> None:
    """`chat_udp.py --demo` plays a whole session in one reactor and exits."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--demo"],
        capture_output=True, text=True, timeout=10, env=_env(), check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in (
        "[alice] JOK",
        "[bob] JERR NAME TAKEN",
        "[alice] (bob) hi alice, only you see this",
        "carol dropped after 3 unanswered PINGs",
        "users left: none",
    ):
        assert line in out
    assert "[carol] (alice) is carol still here?" not in out


def test_command_line_usage_error() -> None:
    """Bad arguments print the usage and return 2."""
    assert chat_udp.main(["bogus"]) == 2


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
    client = chat_udp.ChatClient.__new__(chat_udp.ChatClient)
    client.send = out.append
    keep_going = chat_udp.ChatClient.command(client, line)
    assert out == ([sent] if sent else [])
    assert keep_going is (line != "/quit")
