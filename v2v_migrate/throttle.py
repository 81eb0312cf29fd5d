"""`apply --max-rate VECTORS_PER_S`: keep the write rate at or under a limit, so that a migration can run
against a production server during the day.

A batch of n rows may start once the previous ones have used their share of time: batch k starts no earlier
than (rows written before it) / rate seconds after the first. Over any run the average write rate is then at
most the limit (a single batch goes at the engine's own speed: lower --batch-size smooths it).
"""
from __future__ import annotations

import time
from typing import Callable

from v2v_migrate.errors import UsageError


class RateLimiter:
    """wait(n) before writing n rows. `clock` is time.monotonic; `sleep(seconds)` may return early (e.g. an
    Event's wait on Ctrl-C): wait() then returns too, and the caller sees its stop flag."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep):
        if rate is not None and not float(rate) > 0:
            raise UsageError(f"--max-rate must be a positive number of vectors per second, got {rate}.",
                             "pass e.g. --max-rate 500, or leave it out for no limit.")
        self.rate = float(rate) if rate is not None else None
        self.clock, self.sleep = clock, sleep
        self._next: float | None = None
        self.waited = 0.0   # seconds spent waiting, reported in the summary

    def wait(self, n: int) -> None:
        if self.rate is None or n <= 0:
            return
        now = self.clock()
        start = now if self._next is None else max(now, self._next)
        if start > now:
            self.sleep(start - now)
            self.waited += max(0.0, self.clock() - now)
        self._next = start + n / self.rate
