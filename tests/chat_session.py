"""The easyservers chat session both chat example tests play, over UDP and over TCP, every message checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import run_until

from reactor import ManualClock, Reactor

#: What each member receives in the session, in order.
ALICE_HEARS = ["JOK", "(alice) hello bob", "(bob) hi alice", "PING", "PING", "PING", "PING", "(alice) bye bob"]
BOB_HEARS = ["JERR NAME TAKEN", "JOK", "(alice) hello bob", "(bob) hi alice", "PING", "PING", "PING"]


def quiet(reactor: Reactor, turns: int = 5) -> None:
    """A few more turns, so that a message that should not come has had its chance."""
    for _ in range(turns):
        reactor.run_once(0.01)


def play_session(
    reactor: Reactor,
    clock: ManualClock,
    chat: Any,
    alice: Any,
    bob: Any,
    *,
    bob_gone: Callable[[], bool] = lambda: True,
    after_drop: Callable[[], object] = lambda: None,
) -> None:
    """JOIN/JERR/JOK, MSGA, MSGP, PING/PONG, bob dropped after three missed PINGs, EXIT.

    ``chat`` has ``users``; ``alice`` answers pings, ``bob`` does not.
    ``bob_gone`` says the drop reached bob's side (a TCP member is
    disconnected); ``after_drop`` runs once bob is dropped.  Afterwards both
    transcripts are checked whole.
    """

    def settle(n_alice: int, n_bob: int) -> None:
        run_until(reactor, lambda: len(alice.received) == n_alice and len(bob.received) == n_bob)

    alice.join()
    settle(1, 0)
    bob.join("alice")
    settle(1, 1)
    bob.join()
    settle(1, 2)
    assert list(chat.users) == ["alice", "bob"]

    alice.say("hello   bob")
    settle(2, 3)
    bob.tell("alice", "hi alice")
    settle(3, 4)
    bob.tell("nobody", "lost")  # unknown recipient: ignored

    for beat in range(1, 4):  # three beats: alice answers, bob does not
        clock.advance(10.0)
        settle(3 + beat, 4 + beat)
        run_until(reactor, lambda: chat.users["alice"].missed_pings == 0)
        assert chat.users["bob"].missed_pings == beat
    clock.advance(10.0)  # fourth beat: bob is dropped instead of pinged again
    settle(7, 7)
    run_until(reactor, lambda: bob_gone() and chat.users["alice"].missed_pings == 0)
    assert list(chat.users) == ["alice"]
    after_drop()

    alice.say("bye bob")
    settle(8, 7)
    alice.exit()
    run_until(reactor, lambda: not chat.users)
    clock.advance(10.0)  # nobody left to ping
    quiet(reactor)
    assert alice.received == ALICE_HEARS
    assert bob.received == BOB_HEARS
