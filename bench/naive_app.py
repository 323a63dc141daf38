"""The encoding service a typical user writes first: the baseline `python -m bench.load` compares vaeserve with.

    NAIVE_BUNDLE=model/zoo/mnist-vae/1 uvicorn naive_app:app --app-dir bench --host 127.0.0.1 --port 8001

FastAPI and torch eager, as in most tutorials: `POST /encode` takes one multipart upload, PIL
decodes and converts it to the model's input, and one forward pass of the encoder (one torch
thread, no batching) answers {"mean": [...], "log_var": [...]}. `GET /healthz` answers "ok".

The network is rebuilt with training/nets.py from the bundle's training config, or from the
fixed configs of the two bench models. Its weights are random: only speed is measured.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from model.bundle import Manifest, load_bundle
from training.config import DataConfig, ModelConfig, RunConfig, load_config
from training.nets import VAE

ROOT = Path(__file__).resolve().parent.parent
FIXED_CONFIGS = {  # for bundles written without a training config
    "mnist-vae": load_config(ROOT / "training" / "configs" / "mnist.toml", []),
    "big-vae": RunConfig(  # as bench/make_big_model.py builds it
        model=ModelConfig(arch="conv", channels=[32, 64, 128, 256], hidden=[512], latent_dim=64),
        data=DataConfig(channels=3, height=64, width=64),
    ),
}


def run_config(manifest: Manifest) -> RunConfig:
    if manifest.training is not None:
        return RunConfig.from_stored(manifest.training.config)
    if manifest.name not in FIXED_CONFIGS:
        raise SystemExit(f"{manifest.name}: the bundle has no training config and no fixed config is known")
    return FIXED_CONFIGS[manifest.name]


torch.set_num_threads(1)
CONFIG = run_config(load_bundle(os.environ["NAIVE_BUNDLE"]).manifest)
DATA = CONFIG.data
assert DATA.channels and DATA.height and DATA.width, "a stored config names its input size"
CHANNELS, HEIGHT, WIDTH = DATA.channels, DATA.height, DATA.width
MODE = "L" if CHANNELS == 1 else "RGB"
model = VAE(CONFIG.model, DATA).eval()
app = FastAPI(title="naive VAE encoder")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/encode")
async def encode(file: UploadFile = File(...)) -> dict[str, list[float]]:  # noqa: B008 (the tutorial form)
    image = Image.open(io.BytesIO(await file.read())).convert(MODE).resize((WIDTH, HEIGHT))
    pixels = np.asarray(image, dtype=np.float32).reshape(HEIGHT, WIDTH, CHANNELS) / 255.0
    x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        mean, log_var = model.encoder(x)
    return {"mean": mean[0].tolist(), "log_var": log_var[0].tolist()}
