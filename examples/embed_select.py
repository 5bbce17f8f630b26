"""A reactor living inside a plain ``select.select`` loop.

The host loop owns the thread and watches its own socket; the reactor is just
one more file descriptor (`Reactor.fileno`) and one more deadline
(`Reactor.timeout`).  After every wakeup the host calls ``run_once(0)``.

Run: ``python examples/embed_select.py`` — it finishes on its own.
"""

from __future__ import annotations

import select
import socket

from reactor import Reactor


def main() -> None:
    reactor = Reactor()
    host_a, host_b = socket.socketpair()  # the host's own I/O
    react_a, react_b = socket.socketpair()  # I/O the reactor handles

    def on_reactor_readable() -> None:
        print("reactor got:", react_a.recv(100).decode())

    reactor.add_reader(react_a, on_reactor_readable)
    t0 = reactor.time()
    ticks = reactor.call_every(0.05, lambda: print("reactor tick at", round(reactor.time() - t0, 2)))
    reactor.call_later(0.12, react_b.send, b"hello from a reactor timer")
    reactor.call_later(0.17, host_b.send, b"hello for the host")
    done = False

    def finish() -> None:
        nonlocal done
        ticks.cancel()
        done = True

    reactor.call_later(0.3, finish)

    while not done:
        readable, _, _ = select.select([host_a.fileno(), reactor.fileno()], [], [], reactor.timeout())
        if host_a.fileno() in readable:
            print("host got:", host_a.recv(100).decode())
        reactor.run_once(0)  # serves due timers and ready I/O; never blocks

    reactor.remove_reader(react_a)
    reactor.close()
    for s in (host_a, host_b, react_a, react_b):
        s.close()
    print("done")


if __name__ == "__main__":
    main()
