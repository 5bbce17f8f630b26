"""What a ``timeout`` argument means, written once.

The package has one convention: ``None`` means no timeout and a number
larger than 0 is a number of seconds.  Anything else is a mistake that
raises at the call site -- ``nan`` above all, which compares false with
everything and would otherwise pass for "no timeout" or for "at once"
depending on which comparison a check happened to use.

The yoton-compatible request calls (`reactor.client.request`,
`Reactor.request`, `do_request`, the command line's ``--timeout``) keep
yoton's reading as their one documented exception: there ``0`` and negative
numbers also mean no timeout.  ``nan`` is an error there too.

This module imports nothing of the package, so any layer may use it.
"""

from __future__ import annotations

import math

__all__ = ["checked_timeout", "yoton_timeout"]


def checked_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    """``timeout`` if it is None or a number larger than 0; else `ValueError` (`TypeError` for a non-number)."""
    if timeout is None:
        return None
    number = _number(timeout, name)
    if not number > 0:
        raise ValueError(f"{name} must be a number of seconds larger than 0, or None for no timeout; got {timeout!r}")
    return number


def yoton_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    """yoton's reading: seconds if larger than 0; None, 0 or a negative number mean no timeout; nan raises."""
    if timeout is None:
        return None
    number = _number(timeout, name)
    return number if number > 0 else None


def _number(timeout: object, name: str) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {timeout!r}")
    number = float(timeout)
    if math.isnan(number):
        raise ValueError(f"{name} is nan: give a number of seconds, or None for no timeout")
    return number
