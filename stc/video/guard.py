"""The time budget and the stop callable of one read (`Guard`), checked as frames decode."""

from __future__ import annotations

import math
import numbers
import time
from typing import Callable

from .errors import Cancelled, DecodeTimeout

# should_stop() is asked at most this often while frames decode (the time budget is checked
# after every frame).
STOP_POLL_SECONDS = 0.05


class Guard:
    """The time budget and the stop callable of one read, checked as frames decode.

    Time counts only while a reader runs (`resume` .. `pause`): a `VideoStream`'s consumer
    works between chunks on its own clock. ``check()`` raises `DecodeTimeout` past the budget
    and `Cancelled` when ``should_stop()`` (asked at most every STOP_POLL_SECONDS) says so;
    ``frame()`` counts a decoded frame, then checks.
    """

    def __init__(self, path: str, time_budget: float | None = None, should_stop: Callable[[], bool] | None = None):
        self.path, self.budget, self.should_stop = path, time_budget, should_stop
        self.active = time_budget is not None or should_stop is not None
        self.count = 0  # sampled frames planned (set by the reader once known)
        self.kept = self.decoded = 0
        self._spent, self._since, self._ask_at = 0.0, None, 0.0

    def resume(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def pause(self) -> None:
        if self._since is not None:
            self._spent += time.monotonic() - self._since
            self._since = None

    def check(self) -> None:
        if not self.active:
            return
        now = time.monotonic()
        spent = self._spent + (now - self._since if self._since is not None else 0.0)
        if self.budget is not None and spent > self.budget:
            self.pause()
            planned = f" of {self.count}" if self.count else ""
            decoded = f" ({self.decoded:,} decoded)" if self.decoded else ""
            raise DecodeTimeout(
                f"cannot read video {self.path}: decoding passed its {self.budget:g} s limit with {self.kept}{planned} "
                f"frames read{decoded}; ask for fewer frames, or trim or shrink the video"
            )
        if self.should_stop is not None and now >= self._ask_at:
            self._ask_at = now + STOP_POLL_SECONDS
            if self.should_stop():
                self.pause()
                raise Cancelled(f"cancelled while decoding {self.path} ({self.kept} frames read)")

    def frame(self) -> None:
        self.decoded += 1
        self.check()


def checked_guard(path, time_budget, should_stop) -> Guard:
    """The checked guards of one read (ValueError for a bad ``time_budget`` or ``should_stop``)."""
    if time_budget is not None and (
        isinstance(time_budget, bool) or not isinstance(time_budget, numbers.Real) or not math.isfinite(time_budget)
        or not time_budget > 0
    ):
        raise ValueError(f"time_budget must be a positive number of seconds or None, got {time_budget!r}")
    if should_stop is not None and not callable(should_stop):
        raise ValueError(f"should_stop must be a callable or None, got {type(should_stop).__name__}")
    return Guard(str(path), None if time_budget is None else float(time_budget), should_stop)
