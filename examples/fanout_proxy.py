"""A fan-out proxy in one thread, with no threads at all.

``FanOut.handle_request`` asks two backend servers at once with
`Reactor.request` and returns a `Future`; the reply goes back to the client
when both backends have answered (or one failed).  Backends, proxy and client
requests all share one reactor in one thread.

Run: ``python examples/fanout_proxy.py`` — it finishes on its own.
"""

from __future__ import annotations

from reactor import Future, Reactor, RequestServer


class Upper(RequestServer):
    def handle_request(self, request: str) -> str:
        return request.upper()


class Reverse(RequestServer):
    def handle_request(self, request: str) -> str:
        return request[::-1]


class FanOut(RequestServer):
    """Forwards each request to every backend and joins the replies with ' | '."""

    def __init__(self, address: str, backends: list[str], **kwargs: object) -> None:
        super().__init__(address, **kwargs)  # type: ignore[arg-type]
        self.backends = backends

    def handle_request(self, request: str) -> Future[str]:
        reactor = self.reactor
        combined: Future[str] = reactor.create_future()
        asks = [reactor.request(b, request, timeout=5) for b in self.backends]

        def one_done(_: Future[str]) -> None:
            if combined.done():
                return
            failed = [f for f in asks if f.done() and f.exception() is not None]
            if failed:
                combined.set_exception(failed[0].exception())  # type: ignore[arg-type]
            elif all(f.done() for f in asks):
                combined.set_result(" | ".join(f.result() for f in asks))

        for ask in asks:
            ask.add_done_callback(one_done)
        return combined


def main() -> None:
    with Reactor() as reactor:
        upper = Upper("localhost:0", reactor=reactor)
        reverse = Reverse("localhost:0", reactor=reactor)
        proxy = FanOut("localhost:0", [upper.address, reverse.address], reactor=reactor)
        try:
            for text in ("hello", "fan-out"):
                reply = reactor.run_until_complete(reactor.request(proxy.address, text, timeout=5), timeout=10)
                print(f"{text!r} -> {reply!r}")
        finally:
            for server in (proxy, upper, reverse):
                server.close()


if __name__ == "__main__":
    main()
