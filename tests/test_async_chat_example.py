"""examples/async_chat.py: the line chat on coroutine streams, the same session as the other chats.

The session runs on a ManualClock over loopback sockets, so the PING beats
(and dropping a member who never answers) take no real time.
"""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from chat_session import play_session, quiet
from conftest import run_until

from reactor import ManualClock, Reactor

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
async_chat = importlib.import_module("async_chat")

T = TypeVar("T")


def run(reactor: Reactor, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` as a task until it is done (bounded turns); its result."""
    task = reactor.create_task(coro)
    run_until(reactor, task.done)
    return task.result()


def test_a_whole_session_over_streams(reactor: Reactor, clock: ManualClock) -> None:
    """JOIN/JERR/JOK, MSGA, MSGP, PING/PONG, drop and disconnect after three missed PINGs, EXIT."""
    room = async_chat.ChatRoom(ping_interval=10.0)
    server = run(reactor, room.start("127.0.0.1:0"))
    alice = run(reactor, async_chat.ChatMember.connect(server.address, "alice"))
    bob = run(reactor, async_chat.ChatMember.connect(server.address, "bob", answer_pings=False))

    play_session(reactor, clock, room, alice, bob, bob_gone=lambda: bob.closed)
    assert not alice.closed  # EXIT leaves the room; the connection stays open
    run(reactor, alice.close())
    run(reactor, bob.close())
    run(reactor, room.close(server))
    run_until(reactor, lambda: not reactor.connections)
    quiet(reactor, 2)


def test_a_line_over_the_limit_ends_only_that_connection(reactor: Reactor) -> None:
    """A line longer than MAX_LINE closes its connection; the member is gone, the room goes on."""
    room = async_chat.ChatRoom(ping_interval=10.0)
    server = run(reactor, room.start("127.0.0.1:0"))
    alice = run(reactor, async_chat.ChatMember.connect(server.address, "alice"))
    mallory = run(reactor, async_chat.ChatMember.connect(server.address, "mallory"))
    alice.join()
    mallory.join()
    run_until(reactor, lambda: list(room.users) == ["alice", "mallory"])
    mallory.send("MSGA " + "x" * (async_chat.MAX_LINE + 10))
    run_until(reactor, lambda: mallory.closed and list(room.users) == ["alice"])
    alice.say("still here")
    run_until(reactor, lambda: alice.received[-1:] == ["(alice) still here"])
    run(reactor, alice.close())
    run(reactor, mallory.close())
    run(reactor, room.close(server))
    run_until(reactor, lambda: not reactor.connections)


def test_demo_runs_on_its_own() -> None:
    """`async_chat.py --demo` plays a session with three members in one reactor and exits."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "async_chat.py"), "--demo"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    out = result.stdout
    assert "[alice] (alice) hello everyone" in out
    assert "[bob] (alice) hello everyone" in out
    assert "[alice] (bob) hi alice, only you see this" in out
    assert "carol dropped after 3 unanswered PINGs" in out
    assert "users left: none" in out
    assert "PINGs to carol: 3" in out
    assert "(disconnected: True)" in out
