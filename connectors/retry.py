"""Retrying a server call on transient errors: a bounded number of tries with exponential back-off, then a
clear `TransientStoreError`.

Transient: the connection reset or refused (a server restarting), timeouts, "unavailable", rate limits
(HTTP 429, gRPC RESOURCE_EXHAUSTED, "rate limit", "too many requests"). Anything else (a bad request, an
authentication failure) is not retried: it would fail the same way again. Engines' own clients retry too
(pymilvus retries UNAVAILABLE for up to its call `timeout`); this layer bounds the whole and says so.
"""
from __future__ import annotations

import re
import time
from typing import Callable, TypeVar

from connectors.errors import ConnectorError, TransientStoreError

T = TypeVar("T")
DEFAULT_TRIES = 5
DEFAULT_DELAY = 0.5   # seconds before the second try; doubled each time
MAX_DELAY = 8.0
_TRANSIENT = re.compile(
    r"(?i)(connection (reset|refused|aborted|closed)|reset by peer|broken pipe|timed? ?out|deadline exceeded|"
    r"unavailable|rate[ -]?limit|too many requests|resource[_ ]exhausted|\b429\b|\b503\b|server is busy|"
    r"temporarily|try again|socket closed|eof occurred)")
_TRANSIENT_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
_FINAL_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED")


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and what caused it (clients wrap the gRPC error that says what happened)."""
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        out.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return out


def _grpc_code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    try:
        code = code() if callable(code) else code
    except Exception:  # not a gRPC error's code()
        return ""
    return str(getattr(code, "name", "") or "")


def is_transient(exc: BaseException) -> bool:
    """Whether an engine client's error is worth another try (an authentication failure never is, even
    when the client words it like an unreachable server)."""
    if isinstance(exc, TransientStoreError):
        return True
    if isinstance(exc, ConnectorError):
        return False
    chain = _chain(exc)
    codes = {_grpc_code(e) for e in chain}
    if codes & set(_FINAL_CODES):
        return False
    if codes & set(_TRANSIENT_CODES) or any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain):
        return True
    return bool(_TRANSIENT.search(" ".join(f"{type(e).__name__}: {e}" for e in chain)))


def describe(exc: BaseException) -> str:
    """The error's message, with the details of the gRPC error under it (e.g. "auth check failure")."""
    text = getattr(exc, "message", None) or str(exc)
    for cause in _chain(exc)[1:]:
        details = getattr(cause, "details", None)
        if callable(details):
            try:
                return f"{text} ({details()})"
            except Exception:
                pass
    return text


class Retrier:
    """Calls with retries. `retried` counts the extra tries made (for summaries); `sleep` is time.sleep."""

    def __init__(self, tries: int = DEFAULT_TRIES, delay: float = DEFAULT_DELAY, max_delay: float = MAX_DELAY,
                 sleep: Callable[[float], None] = time.sleep):
        if int(tries) < 1:
            raise ValueError("tries must be at least 1")
        self.tries, self.delay, self.max_delay, self.sleep = int(tries), float(delay), float(max_delay), sleep
        self.retried = 0

    def call(self, fn: Callable[[], T], what: str, describe: Callable[[BaseException], str] = str,
             fix: str | None = None) -> T:
        """fn(), retried on transient errors. `describe(exc)` renders an error for the message (redacted);
        `fix` is the caller's advice for the final error."""
        delay = self.delay
        for attempt in range(1, self.tries + 1):
            try:
                return fn()
            except Exception as e:
                if not is_transient(e):
                    raise
                if attempt == self.tries:
                    raise TransientStoreError(
                        f"{what} failed {self.tries} time(s) on a transient server error: {describe(e)[:300]}",
                        (fix or "check that the server is up and reachable.") + " If it is up but busy, retry "
                        "later, lower --max-rate, or raise the store option retries=.") from None
            self.retried += 1
            self.sleep(min(delay, self.max_delay))
            delay *= 2
        raise AssertionError("unreachable")

    def guard(self, fn: Callable[[], T], what: str, describe: Callable[[BaseException], str],
              fail: Callable[[BaseException], ConnectorError], fix: str | None = None, retry: bool = True) -> T:
        """A connector's server call: `call` (when `retry`), our own errors passed on, any other error turned
        into fail(exc) (a typed error with secrets masked)."""
        try:
            return self.call(fn, what, describe, fix) if retry else fn()
        except ConnectorError:
            raise
        except Exception as e:
            raise fail(e) from None
