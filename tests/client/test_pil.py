"""PIL images are sent as the picture they show, losslessly, in every mode the server reads.

Each is compared with the same picture sent as a file (the server decodes files itself,
EXIF orientation and all), against the live server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from client import VAEClient, VAEServeError


@pytest.fixture(scope="module")
def vae(live_url: str):
    with VAEClient(live_url) as client:
        yield client


@pytest.fixture
def digit(digit_arrays: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(digit_arrays[0, 0] * 255).astype(np.uint8))  # L, 28x28, not symmetric


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_to_pil_images(vae: VAEClient, digit: Image.Image, tmp_path: Path,
                                                   fmt: str) -> None:  # fmt: skip
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    path = tmp_path / f"turned.{fmt.lower()}"
    digit.save(path, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    by_path = vae.encode(path).mean
    with Image.open(path) as opened:
        assert opened.getexif()[0x0112] == 6
        by_pil = vae.encode(opened).mean
        upright = ImageOps.exif_transpose(opened)
        stored = np.asarray(opened.convert("L"))
    np.testing.assert_allclose(by_pil, by_path, atol=1e-6)  # what a viewer shows, as the server shows the file
    np.testing.assert_allclose(vae.encode(np.asarray(upright)).mean, by_path, atol=1e-6)
    assert (
        np.abs(vae.encode(stored).mean - by_path).max() > 1e-3
    )  # the stored pixels: another picture (1000x the tolerance)


@pytest.mark.parametrize(
    ("mode", "suffix"), [("F", "tif"), ("CMYK", "tif"), ("I;16", "png"), ("YCbCr", "tif"), ("LAB", "tif"),
                         ("PA", "tif"), ("RGBA", "png"), ("P", "png")],
)  # fmt: skip
def test_every_mode_the_server_reads_goes_losslessly(vae: VAEClient, digit: Image.Image, tmp_path: Path,
                                                     mode: str, suffix: str) -> None:  # fmt: skip
    pixels = np.asarray(digit)
    image = {
        "F": Image.fromarray((pixels / 255.0).astype(np.float32)),
        "I;16": Image.fromarray(pixels.astype(np.uint16) * 257),
        "PA": digit.convert("RGB").convert("P").convert("PA"),
    }.get(mode) or digit.convert("RGB").convert(mode)
    assert image.mode == mode
    path = tmp_path / f"image.{suffix}"
    image.save(path)
    with Image.open(path) as opened:
        assert opened.mode == mode
    np.testing.assert_allclose(vae.encode(image).mean, vae.encode(path).mean, atol=1e-6)


def test_modes_without_a_lossless_file_are_refused_clearly(vae: VAEClient, digit: Image.Image) -> None:
    premultiplied = digit.convert("RGBA").convert("RGBa")  # sent as the RGBA picture it shows
    np.testing.assert_allclose(vae.encode(premultiplied).mean, vae.encode(digit.convert("RGBA")).mean, atol=1e-6)
    with pytest.raises(TypeError, match=r"image 1: a PIL image of mode 'HSV' cannot be sent losslessly; convert"):
        vae.encode([digit, digit.convert("RGB").convert("HSV")])
    with pytest.raises(VAEServeError) as caught:  # sent as a 32-bit TIFF: the server's reason, not an OSError
        vae.encode(Image.fromarray(np.asarray(digit).astype(np.int32)))
    assert caught.value.status == 415 and "integer pixels" in caught.value.detail
