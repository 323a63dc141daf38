"""The torch side of a bundle's golden set: the trained networks must give the numbers the
exported ONNX graphs give, on the golden inputs, or training fails.

    diffs = check_torch_parity(model, runtime, golden)   # raises GoldenMismatchError

The torch encoder and decoder stand in for the ONNX graphs behind model/'s scoring code
(`model.runtime.score_images`), with the same noise, so every latent and every score is
compared, not only the graphs' raw outputs as the export's parity check does.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from model.bundle import Manifest
from model.golden import GoldenSet, compute_golden, differences
from model.runtime import VAERuntime
from model.scores import COMBINED_SCORES, SCORE_NAMES
from training.nets import VAE

F32 = NDArray[np.float32]


class GoldenMismatchError(RuntimeError):
    """torch and the exported graphs disagree on the golden set beyond its tolerance."""


class TorchGraphs:
    """A torch VAE behind the `model.runtime.Graphs` protocol (float32, no gradients)."""

    def __init__(self, model: VAE, manifest: Manifest) -> None:
        self.model = model.eval()
        self.manifest = manifest

    def encode(self, images: F32) -> tuple[F32, F32]:
        with torch.no_grad():
            mean, log_var = self.model.encoder(torch.from_numpy(np.ascontiguousarray(images, np.float32)))
        return mean.numpy(), log_var.numpy()

    def decode_params(self, z: F32) -> F32:
        with torch.no_grad():
            return self.model.decoder(torch.from_numpy(np.ascontiguousarray(z, np.float32))).numpy()


def check_torch_parity(model: VAE, runtime: VAERuntime, golden: GoldenSet) -> dict[str, float]:
    """Recompute `golden` (made from `runtime`'s ONNX graphs) with the torch model; return the
    largest absolute difference of the latents and of each score, or raise GoldenMismatchError
    naming the first value beyond the golden set's tolerance."""
    spec = runtime.manifest.input
    shape = (spec.channels, spec.height, spec.width)
    pixels = np.asarray([g.pixels for g in golden.images], np.uint8).reshape(-1, *shape)
    inputs = [g.label for g in golden.images], pixels
    theirs = compute_golden(TorchGraphs(model, runtime.manifest), inputs, golden.importance_samples, golden.seed)
    for what, got, want, tolerance in differences(golden, theirs):
        raise GoldenMismatchError(
            f"golden set: torch and ONNX Runtime disagree on {what}: {got:.7g} against {want:.7g} "
            f"(|difference| {abs(got - want):.3g} > tolerance {tolerance:.3g})"
        )
    pairs = list(zip(golden.images, theirs.images, strict=True))
    diffs = {
        "mean": max(float(np.abs(np.subtract(g.mean, t.mean)).max()) for g, t in pairs),
        "log_var": max(float(np.abs(np.subtract(g.log_var, t.log_var)).max()) for g, t in pairs),
    }
    for name in SCORE_NAMES:
        both = [(g.scores[name], t.scores[name]) for g, t in pairs]
        values = [abs(a - b) for a, b in both if a is not None and b is not None]
        if values and name not in COMBINED_SCORES:
            diffs[name] = max(values)
    return {name: float(f"{value:.3g}") for name, value in diffs.items()}
