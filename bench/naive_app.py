"""The encoding service a typical user writes first: the baseline bench/load.py and bench/peers.py compare with.

    NAIVE_BUNDLE=model/zoo/mnist-vae/1 uvicorn naive_app:app --app-dir bench --host 127.0.0.1 --port 8001
    NAIVE_ENGINE=onnxruntime NAIVE_BUNDLE=model/zoo/mnist-vae/1 uvicorn naive_app:app --app-dir bench ...

FastAPI, as in most tutorials: `POST /encode` takes one multipart upload, PIL decodes and
converts it to the model's input, and one forward pass of the encoder (one thread, no
batching) answers {"mean": [...], "log_var": [...]}. `GET /healthz` answers "ok".

NAIVE_ENGINE picks the forward pass:
- `torch` (default, bench/load.py): torch eager; the network is rebuilt with
  training/nets.py from the bundle's training config, or from the fixed configs of the two
  bench models. Its weights are random: only speed is measured.
- `onnxruntime` (bench/peers.py): one `session.run` of the bundle's own encoder.onnx per
  request, the same file every peer serves.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from model.bundle import Bundle, InputSpec, load_bundle

ROOT = Path(__file__).resolve().parent.parent
Forward = Callable[[np.ndarray], tuple[list[float], list[float]]]  # (1, C, H, W) -> mean, log_var


def torch_forward(bundle: Bundle) -> Forward:
    """The encoder in torch eager, rebuilt from the bundle's config (random weights)."""
    import torch

    from training.config import DataConfig, ModelConfig, RunConfig, load_config
    from training.nets import VAE

    fixed = {  # for bundles written without a training config
        "mnist-vae": load_config(ROOT / "training" / "configs" / "mnist.toml", []),
        "big-vae": RunConfig(  # as bench/make_big_model.py builds it
            model=ModelConfig(arch="conv", channels=[32, 64, 128, 256], hidden=[512], latent_dim=64),
            data=DataConfig(channels=3, height=64, width=64),
        ),
    }
    manifest = bundle.manifest
    if manifest.training is not None:
        config = RunConfig.from_stored(manifest.training.config)
    elif manifest.name in fixed:
        config = fixed[manifest.name]
    else:
        raise SystemExit(f"{manifest.name}: the bundle has no training config and no fixed config is known")
    torch.set_num_threads(1)
    model = VAE(config.model, config.data).eval()

    def forward(x: np.ndarray) -> tuple[list[float], list[float]]:
        with torch.no_grad():
            mean, log_var = model.encoder(torch.from_numpy(x))
        return mean[0].tolist(), log_var[0].tolist()

    return forward


def onnxruntime_forward(bundle: Bundle) -> Forward:
    """One session.run of the bundle's encoder.onnx, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(bundle.encoder_path), options, providers=["CPUExecutionProvider"])

    def forward(x: np.ndarray) -> tuple[list[float], list[float]]:
        mean, log_var = session.run(None, {"image": x})
        return mean[0].tolist(), log_var[0].tolist()

    return forward


ENGINES = {"torch": torch_forward, "onnxruntime": onnxruntime_forward}
BUNDLE = load_bundle(os.environ["NAIVE_BUNDLE"])
DATA: InputSpec = BUNDLE.manifest.input
MODE = DATA.colour_mode
forward = ENGINES[os.environ.get("NAIVE_ENGINE", "torch")](BUNDLE)
app = FastAPI(title="naive VAE encoder")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/encode")
async def encode(file: UploadFile = File(...)) -> dict[str, list[float]]:  # noqa: B008 (the tutorial form)
    image = Image.open(io.BytesIO(await file.read())).convert(MODE).resize((DATA.width, DATA.height))
    pixels = np.asarray(image, dtype=np.float32).reshape(DATA.height, DATA.width, DATA.channels) / 255.0
    mean, log_var = forward(np.ascontiguousarray(pixels.transpose(2, 0, 1)[None]))
    return {"mean": mean, "log_var": log_var}
