"""The vaeserve Python client (sync and async) and the `vaeserve` command line.

    from client import VAEClient
    with VAEClient("http://127.0.0.1:8000") as vae:
        vae.encode(["digit.png"]).mean          # (1, latent_dim) numpy array

Importing it loads httpx, numpy and pydantic, never torch, onnxruntime or the server.
"""

from client.aio import AsyncVAEClient
from client.calls import DEFAULT_URL
from client.errors import VAEServeConnectionError, VAEServeError, VAEServeTimeoutError
from client.retry import NO_RETRY, RetryPolicy
from client.sync import VAEClient

__all__ = [
    "DEFAULT_URL",
    "NO_RETRY",
    "AsyncVAEClient",
    "RetryPolicy",
    "VAEClient",
    "VAEServeConnectionError",
    "VAEServeError",
    "VAEServeTimeoutError",
]
