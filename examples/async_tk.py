"""``async def`` in a Tk window, without asyncio and without a thread (Unix).

`reactor.embed.attach_tkinter` drives the reactor from Tk's main loop, and
the reactor's own tasks run there too.  The window's button starts a task
that asks two servers at once with `reactor.gather` and shows both replies;
the widgets are updated from the task, in the Tk thread, with no locks and
no ``after`` callbacks.

The two servers live on the same reactor: one with a plain
``handle_request`` (upper case), one with an ``async def`` handler that
sleeps a little before it answers (reversed), so the window stays
responsive while both requests are in flight.

Run: ``python examples/async_tk.py``.  Headless, for a test: under Xvfb,
``python examples/async_tk.py --click-after 0.2 --quit-after 2``.
"""

from __future__ import annotations

import argparse
import tkinter as tk

import reactor
from reactor import Reactor, RequestServer, Task, sleep
from reactor.embed import attach_tkinter


class Upper(RequestServer):
    """Answers at once, in upper case."""

    def handle_request(self, request: str) -> str:
        return request.upper()


class SlowReverse(RequestServer):
    """Answers reversed, after ``delay`` seconds of reactor time (a coroutine handler)."""

    delay = 0.2

    async def handle_request(self, request: str) -> str:
        await sleep(self.delay)
        return request[::-1]


class App:
    """The window's widgets, its two servers, and the task a click starts."""

    def __init__(self, root: tk.Tk, reactor: Reactor) -> None:
        self.reactor = reactor
        self.upper = Upper("localhost:0", reactor=reactor)
        self.reverse = SlowReverse("localhost:0", reactor=reactor)
        self.text = tk.StringVar(root, "hello")
        self.replies = [tk.StringVar(root, "-"), tk.StringVar(root, "-")]
        self.status = tk.StringVar(root, "idle")
        #: The task of the last click (None before the first).
        self.task: Task[None] | None = None
        tk.Entry(root, textvariable=self.text).pack(padx=12, pady=4)
        self.button = tk.Button(root, text="Ask both servers", command=self.clicked)
        self.button.pack(padx=12, pady=4)
        for reply in self.replies:
            tk.Label(root, textvariable=reply).pack(padx=12, pady=2)
        tk.Label(root, textvariable=self.status).pack(padx=12, pady=4)

    def clicked(self) -> None:
        """The button's command: start a task (Tk calls this in its own thread, the reactor's)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()  # a second click replaces the first
        self.status.set("asking...")
        for reply in self.replies:
            reply.set("...")
        self.task = self.reactor.create_task(self.ask_both(self.text.get()))

    async def ask_both(self, text: str) -> None:
        """Ask both servers at once and show what each answered."""
        replies = await reactor.gather(
            self.reactor.request(self.upper.address, text, timeout=5),
            self.reactor.request(self.reverse.address, text, timeout=5),
            return_exceptions=True,
        )
        for var, reply in zip(self.replies, replies, strict=True):
            var.set(f"failed: {reply!r}" if isinstance(reply, BaseException) else reply)
        self.status.set("done")
        print("replies:", " | ".join(var.get() for var in self.replies), flush=True)

    def close(self) -> None:
        """Cancel the click's task and close both servers."""
        if self.task is not None:
            self.task.cancel()
        self.upper.close()
        self.reverse.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quit-after", type=float, metavar="SECONDS", help="close the window after SECONDS")
    parser.add_argument("--click-after", type=float, metavar="SECONDS", help="press the button once after SECONDS")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = tk.Tk()
    root.title("async def in Tk")
    root.protocol("WM_DELETE_WINDOW", root.quit)
    with Reactor() as loop:
        app = App(root, loop)
        print(f"servers on {app.upper.address} and {app.reverse.address}", flush=True)
        driver = attach_tkinter(loop, root)
        if args.click_after is not None:
            root.after(round(args.click_after * 1000), app.button.invoke)
        if args.quit_after is not None:
            root.after(round(args.quit_after * 1000), root.quit)
        try:
            root.mainloop()
        finally:
            app.close()
            driver.close()
            root.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
