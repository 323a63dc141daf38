"""What the client raises: the server's problem details, or a server it could not reach."""

from __future__ import annotations

import httpx2 as httpx

PROBLEM_JSON = "application/problem+json"


class VAEServeError(Exception):
    """An error answer from the server, from its RFC 9457 problem details.

    `type` is the problem's URN (e.g. `urn:vaeserve:problem:model-not-found`), `title` its
    fixed short text, `detail` what was wrong with this request.
    """

    def __init__(self, status: int, type: str, title: str, detail: str, retry_after: str | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.retry_after = retry_after  # the Retry-After header of a 503, as sent


class VAEServeConnectionError(VAEServeError):
    """The server could not be reached (refused, reset, timed out); `status` is 0."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, "urn:vaeserve:client:unreachable", "Cannot reach the server", f"{url}: {reason}")
        self.args = (f"cannot reach {url}: {reason}",)
        self.url = url


def error_from_response(response: httpx.Response) -> VAEServeError:
    """The VAEServeError for a non-2xx answer: its problem details, or its status and text."""
    retry_after = response.headers.get("retry-after")
    if response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return VAEServeError(
                response.status_code,
                str(body.get("type", "about:blank")),
                str(body.get("title", response.reason_phrase)),
                str(body.get("detail", "")),
                retry_after,
            )
    # Not ours (a proxy, a load balancer, the v2 protocol): keep the start of whatever came.
    text = response.text.strip().replace("\n", " ")[:200]
    return VAEServeError(response.status_code, "about:blank", response.reason_phrase, text, retry_after)


class VAEServeTimeoutError(VAEServeError):
    """The server was reached but no answer came within the client's `timeout`; `status` is 0.

    The server may still be working on the request (a large K takes time), so it is not
    retried: give a longer timeout (`timeout=`, the CLI's --timeout) or ask for less.
    """

    def __init__(self, url: str, reason: str, timeout: float) -> None:
        detail = f"{url}: {reason} within the timeout of {timeout:g} s"
        super().__init__(0, "urn:vaeserve:client:timeout", "No answer in time", detail)
        self.args = (f"no answer from {url}: {reason} within the timeout of {timeout:g} s",)
        self.url = url
        self.timeout = timeout


_TIMED_OUT: dict[type[httpx.TransportError], str] = {
    httpx.ReadTimeout: "nothing came back",
    httpx.WriteTimeout: "the request could not be sent",
}


def connection_error(url: str, exc: httpx.TransportError, timeout: float) -> VAEServeError:
    """VAEServeTimeoutError when the server was reached but did not answer in time, else VAEServeConnectionError."""
    if type(exc) in _TIMED_OUT:
        return VAEServeTimeoutError(url, _TIMED_OUT[type(exc)], timeout)
    reason = {
        httpx.ConnectError: "connection refused or host unreachable",
        httpx.ConnectTimeout: f"no connection within the timeout of {timeout:g} s",
        httpx.PoolTimeout: "timed out waiting for a free connection",
    }.get(type(exc), str(exc) or type(exc).__name__)
    return VAEServeConnectionError(url, reason)
