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


def connection_error(url: str, exc: httpx.TransportError) -> VAEServeConnectionError:
    reason = {
        httpx.ConnectError: "connection refused or host unreachable",
        httpx.ConnectTimeout: "timed out while connecting",
        httpx.ReadTimeout: "timed out waiting for the answer",
        httpx.WriteTimeout: "timed out while sending",
        httpx.PoolTimeout: "timed out waiting for a connection",
    }.get(type(exc), str(exc) or type(exc).__name__)
    return VAEServeConnectionError(url, reason)
