"""``python -m reactor top PATH``: the connection table of a serving process, live.

It reads the control socket of ``python -m reactor serve --control PATH``
(`reactor.control`) about once a second and draws a full-screen view: a
header with the totals (rows by state, requests, turns and timers per
second, accept pauses, slow callbacks), one line per server and one line per
connection, sorted by age, bytes or state, filtered by state or peer.
``--once`` prints one table and exits; ``--once --json`` prints the snapshot
as one JSON object.

The terminal library is the standard library's `curses`: it is on every
POSIX Python, needs no extra dependency in a production image, and the view
needs nothing it lacks (a screen of text, a few attributes, keys without
Enter, resizing).  The table itself is formatted by plain functions
(`render`), so ``--once`` and the tests use exactly the text the live view
draws.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .client import RequestError, do_request

__all__ = ["fetch", "render", "run_once", "run_live", "SORT_KEYS", "TopError"]

#: What the rows can be sorted by (``s`` cycles through them in the live view).
SORT_KEYS = ("age", "bytes", "state")


class TopError(Exception):
    """The control socket could not be read (nothing listens, or it answered an error)."""


def fetch(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the control socket at ``path`` for a snapshot; the decoded JSON object."""
    try:
        reply = do_request("unix:" + path, "snapshot", timeout)
    except (OSError, RequestError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TopError(f"cannot read the control socket {path}: {reason}") from None
    if reply is None:
        raise TopError(f"no answer from the control socket {path} within {timeout} s")
    if not reply.startswith("{"):
        raise TopError(f"the control socket {path} answered: {reply[:200]}")
    data: dict[str, Any] = json.loads(reply)
    return data


def _rate(now: dict[str, Any], before: dict[str, Any] | None, value: Callable[[dict[str, Any]], float]) -> str:
    if before is None:
        return "-"
    seconds = now["reactor"]["time"] - before["reactor"]["time"]
    if seconds <= 0:
        return "-"
    return f"{max(0.0, value(now) - value(before)) / seconds:.1f}"


def _completed(snap: dict[str, Any]) -> float:
    return float(sum(server.get("completed", 0) for server in snap["servers"]))


def _turns(snap: dict[str, Any]) -> float:
    return float(snap["reactor"].get("turns", 0))


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows sorted by ``key`` (one of `SORT_KEYS`): oldest, most bytes, or by state then age."""
    if key == "age":
        return sorted(rows, key=lambda row: -row["age"])
    if key == "bytes":
        return sorted(rows, key=lambda row: -(row["bytes_in"] + row["bytes_out"]))
    if key == "state":
        return sorted(rows, key=lambda row: (row["state"], -row["age"]))
    raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, got {key!r}")


def filter_rows(rows: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The rows whose state is ``text`` (any case) or whose peer contains it; all for ``''``."""
    if not text:
        return rows
    lowered = text.lower()
    return [row for row in rows if row["state"].lower() == lowered or lowered in str(row["peer"]).lower()]


def render(
    snap: dict[str, Any],
    before: dict[str, Any] | None = None,
    *,
    sort: str = "age",
    filter_text: str = "",
    source: str = "",
) -> list[str]:
    """The view of one snapshot as lines of text (``before``, an earlier one, gives the rates)."""
    info = snap["reactor"]
    states = ", ".join(f"{state} {count}" for state, count in sorted(info.get("states", {}).items())) or "none"
    workers = snap.get("workers", [])
    pids = ", ".join(str(worker["pid"]) for worker in workers)
    lines = [
        f"reactor top {source}  pid {info.get('pid')}  workers {len(workers)} ({pids})",
        f"connections {len(snap['connections'])}: {states}",
        f"requests/s {_rate(snap, before, _completed)}  turns/s {_rate(snap, before, _turns)}  "
        f"timers {info.get('timers', 0)}  accept pauses {sum(s.get('accept_pauses', 0) for s in snap['servers'])}  "
        f"slow callbacks {info.get('slow_callbacks', 0)}",
        "",
        f"{'SERVER':<28} {'ACCEPTED':>9} {'COMPLETED':>9} {'ERRORS':>7} {'TIMEOUTS':>8} {'REJECTED':>8} {'ACTIVE':>7}",
    ]
    for server in snap["servers"]:
        lines.append(
            f"{server['address'][:28]:<28} {server.get('accepted', 0):>9} {server.get('completed', 0):>9} "
            f"{server.get('errors', 0):>7} {server.get('timeouts', 0):>8} {server.get('rejected', 0):>8} "
            f"{server.get('active', 0):>7}"
        )
    rows = sort_rows(filter_rows(snap["connections"], filter_text), sort)
    shown = f"  filter {filter_text!r}" if filter_text else ""
    lines.append("")
    lines.append(f"{len(rows)} rows, by {sort}{shown}")
    lines.append(
        f"{'PID':>7} {'FD':>5} {'STATE':<12} {'PEER':<22} {'AGE':>8} {'IN':>9} {'OUT':>9} {'PENDING':>8} "
        f"{'DEADLINE':>8}  OWNER"
    )
    for row in rows:
        deadline = "-" if row["deadline"] is None else _age(max(0.0, row["deadline"]))
        lines.append(
            f"{row.get('pid', ''):>7} {row['fd']:>5} {row['state'][:12]:<12} {str(row['peer'])[:22]:<22} "
            f"{_age(row['age']):>8} {row['bytes_in']:>9} {row['bytes_out']:>9} {row['pending_out']:>8} "
            f"{deadline:>8}  {row['owner']}"
        )
    return lines


def run_once(path: str, as_json: bool = False, *, sort: str = "age", filter_text: str = "") -> str:
    """One snapshot as text: the table (as the live view shows it) or the JSON object."""
    snap = fetch(path)
    if as_json:
        return json.dumps(snap, indent=None, sort_keys=False)
    return "\n".join(render(snap, sort=sort, filter_text=filter_text, source=path))


def run_live(path: str, interval: float = 1.0, *, sort: str = "age", filter_text: str = "") -> None:
    """The full-screen view until ``q``: ``s`` switches the sort key, ``f`` sets a filter (empty clears it)."""
    import curses

    if sort not in SORT_KEYS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, got {sort!r}")

    def main(screen: Any) -> None:
        nonlocal sort, filter_text
        curses.curs_set(0)
        screen.timeout(100)
        before: dict[str, Any] | None = None
        snap: dict[str, Any] | None = None
        error = ""
        next_fetch = 0.0
        while True:
            now = time.monotonic()
            if now >= next_fetch:
                next_fetch = now + interval
                try:
                    before, snap = snap, fetch(path)
                    error = ""
                except TopError as exc:
                    error = str(exc)
            height, width = screen.getmaxyx()
            screen.erase()
            lines = render(snap, before, sort=sort, filter_text=filter_text, source=path) if snap else []
            footer = "q quit  s sort (age/bytes/state)  f filter" + (f"  | {error}" if error else "")
            for y, line in enumerate(lines[: max(0, height - 1)]):
                bold = line.startswith(("reactor top", "SERVER", "    PID"))
                screen.addnstr(y, 0, line, max(0, width - 1), curses.A_BOLD if bold else curses.A_NORMAL)
            screen.addnstr(height - 1, 0, footer, max(0, width - 1), curses.A_REVERSE)
            screen.refresh()
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return
            if key == ord("s"):
                sort = SORT_KEYS[(SORT_KEYS.index(sort) + 1) % len(SORT_KEYS)]
            elif key in (ord("f"), ord("/")):
                filter_text = _prompt(screen, "filter (state or peer): ")
            elif key == curses.KEY_RESIZE:
                continue

    curses.wrapper(main)


def _prompt(screen: Any, label: str) -> str:
    """Read a line at the bottom of the screen (Enter ends it)."""
    import curses

    height, width = screen.getmaxyx()
    screen.move(height - 1, 0)
    screen.clrtoeol()
    screen.addnstr(height - 1, 0, label, max(0, width - 1))
    curses.echo()
    curses.curs_set(1)
    screen.timeout(-1)
    try:
        text: bytes = screen.getstr(height - 1, min(len(label), max(0, width - 2)), 60)
    finally:
        curses.noecho()
        curses.curs_set(0)
        screen.timeout(100)
    return text.decode("utf-8", "replace").strip()
