"""Write a bundle of a 64x64 RGB convolutional VAE with random weights, for load benchmarks.

    python bench/make_big_model.py --out /tmp/bench/big-vae/1

The network is the shipped conv architecture made bigger (channels 32-64-128-256, hidden 512,
latent 64, torch.manual_seed(0)); its weights are untrained, since only speed is measured.
It is exported by training/export.py and written by model/bundle.py like a trained model,
then loaded back through model/runtime.py to prove the service can serve it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from model.bundle import InputSpec, LikelihoodSpec, Manifest, load_bundle, write_bundle
from model.runtime import RuntimeOptions, VAERuntime
from training.config import DataConfig, ModelConfig, RunConfig
from training.export import export_graphs
from training.nets import VAE

NAME = "big-vae"
BIG = RunConfig(
    name=NAME,
    model=ModelConfig(arch="conv", channels=[32, 64, 128, 256], hidden=[512], latent_dim=64),
    data=DataConfig(channels=3, height=64, width=64),
)


def make_bundle(out: Path, *, force: bool = False) -> Path:
    """Export the random-weight model and write it as a bundle at `out`; return `out`."""
    torch.manual_seed(0)
    model = VAE(BIG.model, BIG.data)
    graphs = export_graphs(model, torch.rand(16, 3, 64, 64))
    manifest = Manifest(
        name=NAME,
        version="1",
        created=datetime.now(UTC),
        description="64x64 RGB conv VAE with random weights, for load benchmarks",
        input=InputSpec(channels=3, height=64, width=64, colour_mode="RGB"),
        latent_dim=BIG.model.latent_dim,
        likelihood=LikelihoodSpec(kind=BIG.model.likelihood),
        onnx_opset=graphs.opset,
    )
    write_bundle(out, manifest, {"encoder.onnx": graphs.encoder, "decoder.onnx": graphs.decoder}, force=force)
    return out


def check_bundle(path: Path) -> tuple[int, ...]:
    """Load the bundle as the service does and encode one image; return the latent mean's shape."""
    runtime = VAERuntime(load_bundle(path), RuntimeOptions(intra_op_threads=1))
    spec = runtime.input
    mean, _ = runtime.encode(np.zeros((1, spec.channels, spec.height, spec.width), np.float32))
    return tuple(mean.shape)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="bundle directory, e.g. /tmp/bench/big-vae/1")
    p.add_argument("--force", action="store_true", help="replace a bundle already there")
    args = p.parse_args()
    path = make_bundle(args.out, force=args.force)
    print(f"wrote {path}: encoder output {check_bundle(path)}")


if __name__ == "__main__":
    main()
