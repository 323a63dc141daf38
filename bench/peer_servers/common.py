"""What every peer server shares: its command line, PNG decoding and one ONNX Runtime session.

Each peer server runs in its own virtual environment (bench/peers.py makes them), where
this project is not installed, so this module needs only numpy, Pillow and onnxruntime.
Decoding is model/preprocess.py's path for an image already of the model's size:
Pillow, convert to the colour mode, float32 in [0, 1], (C, H, W).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--encoder", required=True, help="encoder.onnx: image (N, C, H, W) -> mean, log_var (N, D)")
    p.add_argument("--mode", choices=["L", "RGB"], required=True, help="the model's colour mode")
    p.add_argument("--port", type=int, required=True, help="HTTP port on 127.0.0.1")
    p.add_argument("--max-batch", type=int, default=64, help="largest batch the server may form")
    p.add_argument("--ports", type=int, nargs="*", default=[], help="more free ports (gRPC, metrics)")
    return p.parse_args()


def session(encoder: str) -> ort.InferenceSession:
    """One ONNX Runtime session on one thread, as every server in the benchmark gets."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(encoder, options, providers=["CPUExecutionProvider"])


def decode(png: bytes, mode: str) -> NDArray[np.float32]:
    """PNG bytes -> (C, H, W) float32 in [0, 1]."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert(mode), dtype=np.float32) / np.float32(255.0)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def encode(sess: ort.InferenceSession, pngs: list[bytes], mode: str) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Decode a batch of PNGs and run the encoder once: mean, log_var (N, D)."""
    mean, log_var = sess.run(None, {"image": np.stack([decode(png, mode) for png in pngs])})
    return mean, log_var
