"""When to try a request again: 503 answers (honouring Retry-After) and refused connections.

Only 503 is retried, never another 4xx or 5xx: the server says 503 when it is still loading
its models or is overloaded, and answers it at once, so trying again later is safe. A refused
connection is retried too (the server may be starting): the request never left this machine.
A timeout is not: the server may still be working on it.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2 as httpx


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. `attempts` counts every try, the first one included (1: never retry)."""

    attempts: int = 5
    backoff_s: float = 0.25  # first wait without a Retry-After; doubles with each retry
    max_wait_s: float = 10.0  # a Retry-After longer than this is not waited for: the error is raised
    retry_connect: bool = True  # also retry refused connections, e.g. while the server starts

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError(f"invalid retry policy {self}")


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Attempts:
    """The attempts of one request: after each, how long to wait before the next, or None to stop."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.made = 0
        self.waited_s = 0.0

    def next_wait(self, response: httpx.Response | None, error: httpx.TransportError | None) -> float | None:
        self.made += 1
        if self.made >= self.policy.attempts:
            return None
        if error is not None:
            if not (self.policy.retry_connect and isinstance(error, httpx.ConnectError)):
                return None
            wait: float | None = None
        elif response is not None and response.status_code == 503:
            wait = parse_retry_after(response.headers.get("retry-after"))
        else:
            return None
        if wait is None:
            wait = self.policy.backoff_s * 2 ** (self.made - 1)
        elif wait > self.policy.max_wait_s:
            return None  # the server asked for longer than we may wait: report it, do not come back early
        wait = min(wait, self.policy.max_wait_s)
        self.waited_s += wait
        return wait
