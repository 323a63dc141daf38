"""Domain errors raised by model/: they carry data and know nothing about HTTP or CLIs."""

from __future__ import annotations


class BundleError(Exception):
    """A model bundle that cannot be written or must not be served."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InputError(ValueError):
    """An input (image, array, latent) that cannot be turned into a model input.

    `index` is the position of the offending item in its request, when there is one.
    """

    def __init__(self, reason: str, index: int | None = None) -> None:
        where = f"image {index}: " if index is not None else ""
        super().__init__(f"{where}{reason}")
        self.reason = reason
        self.index = index


class InvalidImageError(InputError):
    """Image bytes that cannot be decoded (not an image, truncated, corrupt)."""


class InputTooLargeError(InputError):
    """An input over a size limit (e.g. a decompression bomb)."""


class UnsupportedImageError(InputError):
    """A decodable image in a form the model cannot take (an unknown mode, an unsupported sample format)."""


class NonFiniteOutputError(InputError):
    """The model answered NaN or infinity for an input: the input lies outside what it can represent."""
