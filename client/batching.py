"""Splitting many images into requests that fit the server's limits (GET /v1/limits), in order.

A server refuses a request with more images than `max_images_per_request`, a body over
`max_body_bytes`, or, for scores and reconstructions, more than `max_total_importance_samples`
images x K. The clients and the CLI ask for the limits once, turn them into a `Budget`, and
send as many requests as it takes; every result depends on its own image only, so the split
never changes a number.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from wire.v1 import Limits

BODY_BYTES = 64  # a multipart body's closing boundary


@dataclass(frozen=True)
class Budget:
    """What one request may carry: images, and bytes of body."""

    max_images: int = sys.maxsize
    max_bytes: int = sys.maxsize


UNLIMITED = Budget()


def budget(limits: Limits | None, importance_samples: int | None = None, max_images: int | None = None) -> Budget:
    """The budget of one request under `limits` (None: a server without /v1/limits, so no budget).

    `importance_samples` is K for score and reconstruct requests (their images x K must stay
    within max_total_importance_samples), None for others; `max_images` a caller's own cap.
    """
    cap = max_images or sys.maxsize
    if limits is None:
        return Budget(max_images=cap)
    images = min(cap, limits.max_images_per_request)
    if importance_samples is not None:
        images = min(images, max(1, limits.max_total_importance_samples // importance_samples))
    return Budget(max_images=images, max_bytes=limits.max_body_bytes)


def k_matters(limits: Limits | None) -> bool:
    """Whether a full request at the largest K could go over the N x K budget: only then is the default K needed."""
    return limits is not None and (
        limits.max_images_per_request * limits.max_importance_samples > limits.max_total_importance_samples
    )


def pack(sizes: Sequence[int], budget: Budget) -> list[list[int]]:
    """Item indices packed in order into groups of at most `budget.max_images` items whose sizes
    (plus BODY_BYTES) fit `budget.max_bytes`; an item too big on its own is a group of one."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = BODY_BYTES
    for index, size in enumerate(sizes):
        if current and (len(current) >= budget.max_images or used + size > budget.max_bytes):
            groups.append(current)
            current, used = [], BODY_BYTES
        current.append(index)
        used += size
    if current:
        groups.append(current)
    return groups


class Batched(Protocol):
    """An answer with one result per image (encode, reconstruct, score)."""

    @property
    def results(self) -> Sequence[Any]: ...

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self: ...


A = TypeVar("A", bound=Batched)


def join(answers: Sequence[A]) -> A:
    """The answers of consecutive requests as one: the first's header, every result in order."""
    if len(answers) == 1:
        return answers[0]
    return answers[0].model_copy(update={"results": [result for answer in answers for result in answer.results]})
